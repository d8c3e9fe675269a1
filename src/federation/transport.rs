//! The sending queue's [`Transport`] over the federation client: `PUT
//! /_matrix/federation/v1/send/{txnId}` (Server-Server API "Transactions").

use std::sync::Arc;

use feathur_federation::{ClientError, FederationClient};
use ruma::{
    api::federation::transactions::{edu::Edu, send_transaction_message},
    serde::Raw,
    MilliSecondsSinceUnixEpoch, ServerName, TransactionId,
};
use serde_json::value::RawValue;

use crate::sending::{Transport, TransportError, TransportFuture};

pub struct ClientTransport {
    client: Arc<FederationClient>,
}

impl ClientTransport {
    pub fn new(client: Arc<FederationClient>) -> ClientTransport {
        ClientTransport { client }
    }
}

impl Transport for ClientTransport {
    fn send_transaction<'a>(
        &'a self,
        destination: &'a ServerName,
        txn_id: &'a TransactionId,
        pdus: Vec<Box<RawValue>>,
        edus: Vec<Raw<Edu>>,
    ) -> TransportFuture<'a> {
        Box::pin(async move {
            let mut request = send_transaction_message::v1::Request::new(
                txn_id.to_owned(),
                self.client.server_name().to_owned(),
                MilliSecondsSinceUnixEpoch::now(),
            );
            request.pdus = pdus;
            request.edus = edus;
            match self.client.send(destination, request).await {
                Ok(response) => Ok(response.pdus),
                Err(e) => Err(classify(e)),
            }
        })
    }
}

/// Which failures are worth retrying: everything except a 4xx about the
/// transaction itself. 401 (our keys not fetched yet), 403 (e.g. an ACL
/// that may change), 404 (a peer still starting) and 429 are retried.
fn classify(error: ClientError) -> TransportError {
    match &error {
        ClientError::Server(e) => {
            let status = e.status_code.as_u16();
            if (400..500).contains(&status) && ![401, 403, 404, 408, 429].contains(&status) {
                TransportError::Rejected(error.to_string())
            } else {
                TransportError::Unavailable(error.to_string())
            }
        }
        _ => TransportError::Unavailable(error.to_string()),
    }
}
