"""`gateway-publisher`: wiring only. Settings, logging, clients, then the publishing loop."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway_common.command_store import CommandStore
from gateway_common.health import Health
from gateway_common.redis_conn import connect
from gateway_common.retention import RetentionRule, StreamRetention
from gateway_common.service import run_service
from gateway_common.streams import PUBLISHER_GROUP, StreamKeys
from gateway_publisher.commands import CommandIntake
from gateway_publisher.metrics import PublisherMetrics
from gateway_publisher.mqtt_link import MqttConfig, MqttLink
from gateway_publisher.options import PublisherOptions
from gateway_publisher.publisher import Publisher
from gateway_publisher.record_source import RecordSource
from gateway_publisher.settings import PublisherSettings
from gateway_publisher.topics import TopicScheme

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from gateway_common.lifecycle import StopSignal

__all__ = ["main", "mqtt_config", "run"]


def mqtt_config(settings: PublisherSettings) -> MqttConfig:
    return MqttConfig(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        client_id=settings.client_id,
        tls=settings.mqtt_tls,
        ca_file=settings.mqtt_ca_file,
        cert_file=settings.mqtt_cert_file,
        key_file=settings.mqtt_key_file,
        username=settings.mqtt_username,
        password=settings.password,
        keepalive_s=settings.keepalive_s,
        reconnect_min_s=settings.reconnect_min_s,
        reconnect_max_s=settings.reconnect_max_s,
        max_inflight=settings.window_messages,
        subscriptions=(
            (TopicScheme(settings.topic_root, settings.project_id, settings.edge_node_id).commands,)
            if settings.downlink
            else ()
        ),
    )


def run(
    settings: PublisherSettings,
    stop: StopSignal,
    registry: CollectorRegistry,
    health: Health | None = None,
) -> None:
    """Run the publisher until `stop` is set (tests run this in a thread)."""
    client = connect(settings.redis_url)
    keys = StreamKeys(settings.stream_prefix)
    link = MqttLink(mqtt_config(settings))
    scheme = TopicScheme(settings.topic_root, settings.project_id, settings.edge_node_id)
    metrics = PublisherMetrics(registry)
    commands = None
    if settings.downlink:
        commands = CommandIntake(
            CommandStore(client, keys),
            client,
            scheme,
            metrics.dcmd_messages,
            ack=link.ack,
            clock=time.time,
            timeout_s=settings.downlink_timeout_s,
            default_interval_s=settings.device_interval_s,
        )
    retention = StreamRetention(
        client,
        [RetentionRule(keys.records, settings.records_retention_s, (PUBLISHER_GROUP,))],
        interval_s=settings.trim_interval_s,
        registry=registry,
    )
    publisher = Publisher(
        source=RecordSource(client, keys, settings.consumer_name),
        link=link,
        topics=scheme,
        metrics=metrics,
        stop=stop,
        health=health if health is not None else Health("publisher"),
        retention=retention,
        options=PublisherOptions(
            window_messages=settings.window_messages,
            max_attempts=settings.max_attempts,
            block_ms=settings.block_ms,
            shutdown_grace_ms=settings.shutdown_grace_ms,
            backlog_interval_ms=settings.backlog_interval_ms,
            device_interval_s=settings.device_interval_s,
            downlink=settings.downlink,
        ),
        commands=commands,
    )
    link.start()
    try:
        publisher.run()
    finally:
        link.close()
        client.close()


def main() -> None:
    run_service("publisher", PublisherSettings, run)
