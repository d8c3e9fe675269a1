//! Password hashing with argon2id (RFC 9106) at the `argon2` crate's default
//! parameters (19 MiB, 2 passes), on a few dedicated threads.
//!
//! Why dedicated threads: each hash needs a 19 MiB buffer. On tokio's shared
//! blocking pool, concurrent hashes ran on many threads and every thread's
//! allocator arena kept such buffers: 100 registrations, 20 at a time, left
//! the server at 1.56 GB RSS; with these threads the same run ends at 0.41 GB.
//! They also bound the CPU a burst of logins can take, and a login never
//! stalls the async runtime.

use std::sync::{mpsc, Arc};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads; dropping it lets them finish their queue and exit.
pub struct Hasher {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Hasher {
    /// `threads` workers (at least one).
    pub fn new(threads: usize) -> Hasher {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("feathur-argon2-{i}"))
                .spawn(move || loop {
                    let job = queue.lock().recv();
                    match job {
                        Ok(job) => {
                            job();
                            release_freed_memory();
                        }
                        Err(_) => break,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Hasher {
            jobs: Mutex::new(jobs),
        }
    }

    /// One worker per core, at most four.
    pub fn for_this_machine() -> Hasher {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Hasher::new(cores.min(4))
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs
            .lock()
            .send(job)
            .map_err(|_| Error::internal("the password hashing threads are gone"))?;
        answer
            .await
            .map_err(|_| Error::internal("a password hashing job was lost"))
    }

    /// Hashes a password into a self-describing PHC string.
    pub async fn hash(&self, password: String) -> Result<String> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
        })
        .await?
    }

    /// Checks a password against a stored hash. With no hash, a dummy hash is
    /// still computed so that "no such user" and "wrong password" take the same time.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        self.run(move || {
            let argon = Argon2::default();
            match stored.as_deref().map(PasswordHash::new) {
                Some(Ok(parsed)) => Ok(argon.verify_password(password.as_bytes(), &parsed).is_ok()),
                Some(Err(e)) => Err(Error::internal(format!(
                    "stored password hash is invalid: {e}"
                ))),
                None => {
                    let salt = SaltString::generate(&mut OsRng);
                    let _ = argon.hash_password(password.as_bytes(), &salt);
                    Ok(false)
                }
            }
        })
        .await?
    }
}

/// Hands the hash's freed 19 MiB buffer back to the system: glibc keeps
/// freed memory of a thread's arena otherwise, so every hashing thread held
/// its last buffers (RSS ~200 MB after ten registrations, against ~30 MB at
/// start). `malloc_trim` costs far less than the hash it follows.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the system; it
    // has no preconditions and does not touch memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::Hasher;

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = Hasher::new(2);
        let h = hasher.hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(hasher
            .verify("correct horse".into(), Some(h.clone()))
            .await
            .unwrap());
        assert!(!hasher.verify("wrong".into(), Some(h)).await.unwrap());
        assert!(!hasher.verify("x".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn many_concurrent_jobs_all_finish() {
        let hasher = std::sync::Arc::new(Hasher::new(2));
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(format!("pw{i}")).await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
    }
}
