"""The panel's Redis channel layer keeps an idle receiver waiting: a message sent after longer than the
client library's default read timeout (5 s in redis-py 8, the layer's own blocking-pop wait) still
arrives, where the default made receive() fail with "Timeout reading" and killed the WebSocket."""

from __future__ import annotations

import asyncio

from channels_redis.core import RedisChannelLayer

from webkvm.config import channel_layers


def test_an_idle_receiver_outlives_the_blocking_pop(redis_url: str) -> None:
    config = channel_layers(redis_url)["default"]
    assert isinstance(config, dict)
    layer = RedisChannelLayer(**config["CONFIG"])

    async def run() -> dict[str, str]:
        channel = await layer.new_channel()

        async def send_late() -> None:
            await asyncio.sleep(6.5)
            await layer.send(channel, {"type": "late.hello"})

        sender = asyncio.create_task(send_late())
        message = await asyncio.wait_for(layer.receive(channel), 15)
        await sender
        await layer.flush()
        return message

    assert asyncio.run(run()) == {"type": "late.hello"}
