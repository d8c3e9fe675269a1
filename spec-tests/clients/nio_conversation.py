"""matrix-nio against Feathur: two users register, create, invite, sync,
join and converse; every message arrives once and in order through /sync.

Usage: python nio_conversation.py BASE_URL
"""

import asyncio
import sys

from nio import (
    AsyncClient,
    JoinResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

URL = sys.argv[1]
MESSAGES = 20


async def register(name):
    client = AsyncClient(URL, name)
    response = await client.register(name, "pw-" + name)
    assert getattr(response, "access_token", None), response
    return client


async def main():
    alice = await register("nioalice")
    bob = await register("niobob")
    try:
        created = await alice.room_create(name="nio room", invite=[bob.user_id])
        assert isinstance(created, RoomCreateResponse), created
        room = created.room_id

        sync = await bob.sync(timeout=1000)
        assert isinstance(sync, SyncResponse), sync
        assert room in sync.rooms.invite, "the invite did not reach bob's sync"
        joined = await bob.join(room)
        assert isinstance(joined, JoinResponse), joined
        token = (await bob.sync(timeout=1000, since=sync.next_batch)).next_batch

        for i in range(MESSAGES):
            sent = await alice.room_send(
                room, "m.room.message", {"msgtype": "m.text", "body": f"n{i}"}
            )
            assert isinstance(sent, RoomSendResponse), sent

        # All messages fit in one timeline, so none is left behind a gap.
        no_gap = {"room": {"timeline": {"limit": 50}}}
        received = []
        for _ in range(20):
            sync = await bob.sync(timeout=2000, since=token, sync_filter=no_gap)
            assert isinstance(sync, SyncResponse), sync
            token = sync.next_batch
            if room in sync.rooms.join:
                assert not sync.rooms.join[room].timeline.limited, "unexpected gap"
                for event in sync.rooms.join[room].timeline.events:
                    if isinstance(event, RoomMessageText):
                        received.append(event.body)
            if len(received) >= MESSAGES:
                break
        expected = [f"n{i}" for i in range(MESSAGES)]
        assert received == expected, f"received {received}"
        assert bob.rooms[room].display_name == "nio room", bob.rooms[room].display_name
        print(f"matrix-nio: {len(received)} messages received once each, in order")
    finally:
        await alice.close()
        await bob.close()


asyncio.run(main())
