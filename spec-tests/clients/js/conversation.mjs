// matrix-js-sdk against Feathur: two users register, start their normal
// sync loops, create, invite, join and converse. Checks that every message
// arrives once and in order, that typing and read receipts reach the other
// user, and that unread counts move with messages and receipts.
//
// Usage: node conversation.mjs BASE_URL SDK_DIR
// (SDK_DIR holds node_modules/matrix-js-sdk, installed from package.json.)

import { join } from "node:path";
import { pathToFileURL } from "node:url";

// matrix-js-sdk 43 wants Node 22's Promise.withResolvers; Node 20 lacks it.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const [baseUrl, sdkDir] = process.argv.slice(2);
const sdk = await import(
  pathToFileURL(join(sdkDir, "node_modules/matrix-js-sdk/lib/index.js")).href
);
// Quiet the SDK's own logging; failures are reported below.
sdk.logger?.setLevel?.("warn");

const MESSAGES = 20;

function fail(message) {
  console.error(`FAILED: ${message}`);
  process.exit(1);
}

/** Resolves when `check()` is true, re-checking on each emitted event. */
function until(description, emitters, check, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${description}`)),
      timeoutMs,
    );
    const poll = () => {
      let done = false;
      try {
        done = check();
      } catch (e) {
        clearTimeout(timer);
        reject(e);
        return;
      }
      if (done) {
        clearTimeout(timer);
        for (const [emitter, name] of emitters) emitter.off(name, poll);
        resolve();
      }
    };
    for (const [emitter, name] of emitters) emitter.on(name, poll);
    poll();
  });
}

async function register(name) {
  const anon = sdk.createClient({ baseUrl });
  const response = await anon.registerRequest({
    username: name,
    password: `pw-${name}`,
    auth: { type: "m.login.dummy" },
  });
  if (!response.access_token) fail(`no access token for ${name}`);
  return sdk.createClient({
    baseUrl,
    userId: response.user_id,
    deviceId: response.device_id,
    accessToken: response.access_token,
  });
}

async function started(client) {
  const ready = until("the first sync", [[client, sdk.ClientEvent.Sync]], () =>
    ["PREPARED", "SYNCING"].includes(client.getSyncState()),
  );
  await client.startClient({ initialSyncLimit: 10 });
  await ready;
}

const alice = await register("jsalice");
const bob = await register("jsbob");
try {
  await started(alice);
  await started(bob);

  const { room_id: roomId } = await alice.createRoom({
    name: "js room",
    invite: [bob.getUserId()],
  });
  await until(
    "bob's invite",
    [[bob, sdk.ClientEvent.Room], [bob, sdk.RoomMemberEvent.Membership]],
    () => bob.getRoom(roomId)?.getMyMembership() === "invite",
  );
  await bob.joinRoom(roomId);
  await until(
    "bob's join in alice's view",
    [[alice, sdk.RoomMemberEvent.Membership]],
    () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join",
  );

  // Messages: each once, in order, through bob's sync loop.
  const received = [];
  bob.on(sdk.RoomEvent.Timeline, (event, room, toStartOfTimeline) => {
    if (room?.roomId === roomId && !toStartOfTimeline && event.getType() === "m.room.message") {
      received.push(event.getContent().body);
    }
  });
  let last;
  for (let i = 0; i < MESSAGES; i++) {
    last = await alice.sendTextMessage(roomId, `j${i}`);
  }
  await until("all messages at bob", [[bob, sdk.RoomEvent.Timeline]], () =>
    received.length >= MESSAGES,
  );
  const expected = Array.from({ length: MESSAGES }, (_, i) => `j${i}`);
  if (JSON.stringify(received) !== JSON.stringify(expected)) {
    fail(`bob received ${JSON.stringify(received)}`);
  }
  const bobRoom = bob.getRoom(roomId);
  if (bobRoom.name !== "js room") fail(`room name at bob: ${bobRoom.name}`);

  // Unread counts: alice's messages notify bob (default push rules).
  await until(
    "bob's unread count",
    [[bob, sdk.ClientEvent.Sync]],
    () => bobRoom.getUnreadNotificationCount(sdk.NotificationCountType.Total) >= MESSAGES,
  );

  // Typing: alice types, bob's member shows it.
  await alice.sendTyping(roomId, true, 10000);
  await until("alice typing at bob", [[bob, sdk.RoomMemberEvent.Typing]], () =>
    bobRoom.getMember(alice.getUserId())?.typing === true,
  );

  // Read receipt: bob reads the last message; alice sees it; bob's count resets.
  const lastEvent = bobRoom.findEventById(last.event_id);
  if (!lastEvent) fail("bob's timeline lacks the last message");
  await bob.sendReadReceipt(lastEvent);
  const aliceRoom = alice.getRoom(roomId);
  await until("bob's receipt at alice", [[alice, sdk.RoomEvent.Receipt]], () =>
    aliceRoom.getUsersReadUpTo(aliceRoom.findEventById(last.event_id)).includes(bob.getUserId()),
  );
  await until(
    "bob's unread count reset",
    [[bob, sdk.ClientEvent.Sync]],
    () => bobRoom.getUnreadNotificationCount(sdk.NotificationCountType.Total) === 0,
  );

  console.log(
    `matrix-js-sdk: ${received.length} messages received once each, in order; ` +
      "typing, receipt and unread counts seen",
  );
} catch (e) {
  fail(e.stack ?? String(e));
} finally {
  alice.stopClient();
  bob.stopClient();
}
process.exit(0);
