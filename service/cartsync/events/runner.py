"""Settings to a running worker: `cartsync worker`, or in-process (CARTSYNC_WORKER=embedded)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from cartsync.events.endpoints import WebhookEndpoint, WebhooksFileError, load_webhooks
from cartsync.events.worker import DeliveryObserver, Worker, WorkerConfig
from cartsync.settings import Settings, SettingsError
from cartsync.storage.outbox import Outbox, OutboxConfig

log = logging.getLogger("cartsync.worker")


def outbox_config(settings: Settings) -> OutboxConfig:
    return OutboxConfig(
        enabled=settings.events,
        partitions=settings.outbox_partitions,
        guests=settings.guest_events,
        abandoned_after_s=settings.abandoned_after_s,
        expiry_notice_s=settings.expiry_notice_s,
    )


def webhook_endpoints(settings: Settings) -> tuple[WebhookEndpoint, ...]:
    """The configured endpoints; SettingsError (exit 2) names a bad file or entry."""
    if settings.webhooks_file is None:
        return ()
    try:
        return load_webhooks(settings.webhooks_file, allow_http=settings.webhooks_allow_http)
    except WebhooksFileError as exc:
        raise SettingsError(f"CARTSYNC_WEBHOOKS_FILE: {exc}") from exc


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        poll_s=settings.worker_poll_s,
        visibility_s=settings.worker_visibility_s,
        retry_hours=settings.webhook_retry_hours,
        retry_base_s=settings.webhook_retry_base_s,
        feed_max=settings.events_feed_max,
    )


def build_worker(
    redis: Redis | RedisCluster, settings: Settings, observer: DeliveryObserver | None
) -> Worker:
    outbox = Outbox(redis, settings.outbox_partitions)
    return Worker(outbox, webhook_endpoints(settings), worker_config(settings), observer=observer)


@contextlib.asynccontextmanager
async def embedded_worker(worker: Worker) -> AsyncIterator[None]:
    """Run ``worker`` beside the web app for as long as the context lasts."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield
    finally:
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=worker.config.total_timeout_s + 5)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=2)
        elif task.exception() is not None:
            log.error("the embedded worker failed", exc_info=task.exception())
