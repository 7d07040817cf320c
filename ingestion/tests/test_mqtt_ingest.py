"""The MQTT ingester against a real Mosquitto, with a real paho publisher: each preset's payloads
(quoted from the devices' documentation) become the right readings, registers go through the
counter handling, and bad input is counted per mapping with its last example.

The ingester runs in a thread of the test process here; test_mqtt_process.py runs it as the
process `manage.py run` starts, and kills it.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from ingestion.mqtt import services as mqtt_services
from ingestion.mqtt.ingester import Ingester
from ingestion.mqtt.models import Broker, Mapping
from ingestion.tests.helpers import wait_until
from ingestion.tests.servers import make_certificate
from ingestion.tests.test_mqtt_broker import (  # noqa: F401 (fixtures)
    Mosquitto,
    make_client_certificate,
    mosquitto_factory_fixture,
    mosquitto_fixture,
    publish,
)
from sensors import services as sensors

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def stored(sensor_id: str, metric: str) -> list[dict[str, Any]]:
    """The raw readings of one sensor's metric, oldest first."""
    return list(
        sensors.data_query(
            sensor_ids=[sensor_id],
            rooms=[],
            metrics=[metric],
            start=datetime(2000, 1, 1, tzinfo=UTC),
            end=datetime(2100, 1, 1, tzinfo=UTC),
            aggregation="raw",
            interval="",
            limit=1_000_000,
        )
    )


@pytest.fixture
def ingester() -> Iterator[Callable[..., Ingester]]:
    """Start the ingester in a thread (brokers and mappings as stored); stopped after the test."""
    running: list[tuple[Ingester, threading.Thread]] = []

    def start(*, subscribed: bool = True, **options: Any) -> Ingester:
        worker = Ingester(batch_seconds=0.05, **options)
        thread = threading.Thread(target=worker.run, name="mqtt-ingester", daemon=True)
        thread.start()
        running.append((worker, thread))
        wait_until(lambda: worker.connections, "the ingester to read its brokers")
        for conn in worker.connections.values() if subscribed else ():
            assert conn.subscribed.wait(10), f"{conn.name}: no subscription answered ({conn.error})"
        return worker

    yield start
    for worker, thread in running:
        worker.stop.set()
        thread.join(20)


def broker_for(server: Mosquitto, name: str = "site", **fields: Any) -> Broker:
    return Broker.objects.create(name=name, host="127.0.0.1", port=server.port, **fields)


def sensor(sensor_id: str, kind: str = "power") -> None:
    sensors.sensor_register(sensor_id=sensor_id, kind=kind)


def values(sensor_id: str, metric: str) -> list[float]:
    return [row["value"] for row in stored(sensor_id, metric)]


# --- presets, with payloads from the devices' documentation -------------------------------------

# Shelly Gen2 API, Switch component, "Switch.GetStatus example" (the status notified on
# <id>/status/switch:0). aenergy.total is in Wh.
SHELLY_STATUS: dict[str, Any] = {
    "id": 0,
    "source": "timer",
    "output": True,
    "apower": 8.9,
    "voltage": 237.5,
    "freq": 50.0,
    "current": 0.068,
    "pf": 0.67,
    "aenergy": {"total": 6.532, "by_minute": [45.199, 47.141, 88.397], "minute_ts": 1654511972},
    "temperature": {"tC": 23.5, "tF": 74.4},
}


def test_shelly_gen2_switch_status_gives_power_and_a_register(mosquitto: Mosquitto, ingester: Any) -> None:
    broker = broker_for(mosquitto)
    mqtt_services.mapping_create(broker=broker, name="shelly", preset="shelly_gen2", sensor_prefix="")
    device = "shellyplus1pm-441793d69718"
    sensor(device, "energy_meter")
    ingester()
    later = SHELLY_STATUS | {"apower": 9.4, "aenergy": SHELLY_STATUS["aenergy"] | {"total": 7.032}}
    publish(mosquitto, [(f"{device}/status/switch:0", json.dumps(SHELLY_STATUS))])
    wait_until(lambda: values(device, "power"), "the first Shelly reading")
    publish(mosquitto, [(f"{device}/status/switch:0", json.dumps(later))])
    wait_until(lambda: len(values(device, "power")) == 2, "the second Shelly reading")
    assert values(device, "power") == [8.9, 9.4]
    # The register (Wh) becomes interval energy (kWh) between the two messages.
    energy = wait_until(lambda: values(device, "energy"), "the interval energy")
    assert energy == [pytest.approx(0.0005)]
    # The counts are written after the readings commit (another database): wait for them.
    mapping = wait_until(
        lambda: (m := Mapping.objects.get(name="shelly")).messages_count == 2 and m,
        "the counts to be written",
    )
    assert mapping.malformed_count == 0


# Tasmota documentation, "Commands > TelePeriod" / energy monitoring: the tele/<topic>/SENSOR
# message of a power-monitoring plug.
TASMOTA_SENSOR = (
    '{"Time":"2019-06-16T10:52:13","ENERGY":{"TotalStartTime":"2019-06-16T10:52:13","Total":0.003,'
    '"Yesterday":0.000,"Today":0.003,"Period":0,"Power":5,"ApparentPower":15,"ReactivePower":14,'
    '"Factor":0.33,"Voltage":234,"Current":0.064}}'
)


def test_tasmota_tele_sensor_gives_power_and_a_register(mosquitto: Mosquitto, ingester: Any) -> None:
    broker = broker_for(mosquitto)
    mqtt_services.mapping_create(broker=broker, name="tasmota", preset="tasmota", register_unknown=True)
    ingester()
    second = TASMOTA_SENSOR.replace('"Total":0.003', '"Total":0.004').replace('"Power":5', '"Power":6')
    publish(mosquitto, [("tele/tasmota_5E4C1F/SENSOR", TASMOTA_SENSOR)])
    wait_until(lambda: values("tasmota_5e4c1f", "power"), "the first Tasmota reading")
    publish(mosquitto, [("tele/tasmota_5E4C1F/SENSOR", second)])
    wait_until(lambda: len(values("tasmota_5e4c1f", "power")) == 2, "the second Tasmota reading")
    assert values("tasmota_5e4c1f", "power") == [5.0, 6.0]
    assert wait_until(lambda: values("tasmota_5e4c1f", "energy"), "interval energy") == [pytest.approx(0.001)]
    registered = sensors.sensors_known(sensor_ids=["tasmota_5e4c1f"])["tasmota_5e4c1f"]
    assert registered["room"] is None and registered["kind"] == "power"


# zigbee2mqtt device pages: the state a plug (power, energy in kWh), an Aqara temperature and
# humidity sensor, and a CO2 sensor publish on zigbee2mqtt/<friendly name>.
Z2M_PLUG = {"current": 0.1, "energy": 12.34, "linkquality": 120, "power": 15.6, "state": "ON", "voltage": 230}
Z2M_AQARA = {"battery": 100, "humidity": 51.44, "linkquality": 255, "pressure": 1006.1, "temperature": 22.18}
Z2M_CO2 = {"co2": 612, "humidity": 40.5, "linkquality": 90, "temperature": 21.0, "voc": 12}


def test_zigbee2mqtt_devices_report_the_fields_they_have(mosquitto: Mosquitto, ingester: Any) -> None:
    broker = broker_for(mosquitto)
    mqtt_services.mapping_create(
        broker=broker, name="z2m", preset="zigbee2mqtt", sensor_prefix="z2m-", register_unknown=True
    )
    ingester()
    publish(
        mosquitto,
        [
            ("zigbee2mqtt/Kitchen Plug", json.dumps(Z2M_PLUG)),
            ("zigbee2mqtt/Living room sensor", json.dumps(Z2M_AQARA)),
            ("zigbee2mqtt/office_co2", json.dumps(Z2M_CO2)),
            ("zigbee2mqtt/bridge/state", '{"state":"online"}'),  # not a device: not subscribed
        ],
    )
    wait_until(lambda: values("z2m-office_co2", "co2"), "the CO2 reading")
    assert values("z2m-kitchen-plug", "power") == [15.6]
    assert values("z2m-living-room-sensor", "temperature") == [22.18]
    assert values("z2m-living-room-sensor", "humidity") == [51.44]
    assert values("z2m-office_co2", "co2") == [612.0]
    assert values("z2m-office_co2", "temperature") == [21.0]
    # A register's first value is its base: nothing stored until the next.
    assert values("z2m-kitchen-plug", "energy") == []
    publish(mosquitto, [("zigbee2mqtt/Kitchen Plug", json.dumps(Z2M_PLUG | {"energy": 12.35}))])
    assert wait_until(lambda: values("z2m-kitchen-plug", "energy"), "the plug's energy") == [
        pytest.approx(0.01)
    ]


def test_emonhub_plain_numbers_are_one_sensor_per_channel(mosquitto: Mosquitto, ingester: Any) -> None:
    broker = broker_for(mosquitto)
    mqtt_services.mapping_create(broker=broker, name="emon", preset="emonhub", register_unknown=True)
    ingester()
    publish(
        mosquitto,
        [
            ("emon/emontx4/P1", "123.4"),
            ("emon/emontx4/P2", "-56"),
            ("emon/emontx4/E1", "1000"),
            ("emon/emontx4/V1", "240.1"),  # a voltage: no field of the preset, counted as ignored
            ("emon/emonth5/temperature", "21.3"),
            ("emon/emonth5/humidity", "52.6"),
        ],
    )
    wait_until(lambda: values("emonth5", "humidity"), "the emonTH's humidity")
    assert values("emontx4-1", "power") == [123.4]
    assert values("emontx4-2", "power") == [-56.0]
    assert values("emonth5", "temperature") == [21.3]
    publish(mosquitto, [("emon/emontx4/E1", "1002")])
    assert wait_until(lambda: values("emontx4-1", "energy"), "the channel's energy") == [pytest.approx(0.002)]
    mapping = Mapping.objects.get(name="emon")
    ignored = wait_until(lambda: Mapping.objects.get(pk=mapping.pk).last_problems.get("ignored"), "ignored")
    assert ignored["topic"] == "emon/emontx4/V1" and ignored["count"] == 1


def test_a_generic_json_object_names_its_sensor_and_time(mosquitto: Mosquitto, ingester: Any) -> None:
    broker = broker_for(mosquitto)
    mqtt_services.mapping_create(broker=broker, name="generic", preset="json")
    sensor("boiler-1")
    ingester()
    at = (timezone.now() - timedelta(minutes=5)).replace(microsecond=0)
    body = {"sensor_id": "boiler-1", "timestamp": at.isoformat(), "power": 1200, "temperature": 55.5}
    publish(mosquitto, [("readings/boiler", json.dumps(body)), ("readings/boiler", json.dumps(body))])
    wait_until(lambda: values("boiler-1", "temperature"), "the boiler's readings")
    rows = stored("boiler-1", "power")
    assert [r["value"] for r in rows] == [1200.0]  # sent twice, stored once: the same instant
    assert datetime.fromisoformat(rows[0]["timestamp"].replace("Z", "+00:00")) == at


def test_a_plain_number_on_its_topic(mosquitto: Mosquitto, ingester: Any) -> None:
    broker = broker_for(mosquitto)
    mqtt_services.mapping_create(
        broker=broker,
        name="solar",
        preset="number",
        topic="house/+",
        fields=[{"path": "", "metric": "power", "unit": "kW"}],
    )
    sensor("solar")
    ingester()
    publish(mosquitto, [("house/solar", "1.5205")])
    assert wait_until(lambda: values("solar", "power"), "the solar power") == [1520.5]


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_counted_per_mapping_with_its_last_example(mosquitto: Mosquitto, ingester: Any) -> None:
    broker = broker_for(mosquitto, watch_topics="tele/#")
    mapping = mqtt_services.mapping_create(broker=broker, name="tasmota", preset="tasmota")
    sensor("plug-a")
    worker = ingester()
    publish(
        mosquitto,
        [
            ("tele/plug-a/SENSOR", "not json at all"),
            ("tele/plug-a/SENSOR", '{"ENERGY": {"Power": "lots"}}'),
            ("tele/plug-a/SENSOR", '{"ENERGY": {"Power": 5e9}}'),  # past the power range
            ("tele/plug-b/SENSOR", '{"ENERGY": {"Power": 5}}'),  # not registered
            ("tele/plug-a/STATE", '{"POWER": "ON"}'),  # watched, no mapping claims it
            ("tele/plug-a/SENSOR", '{"ENERGY": {"Power": 7}}'),  # good
        ],
    )
    wait_until(lambda: values("plug-a", "power"), "the good reading")
    # The counts are written after the readings commit, batch by batch: wait for all five.
    row = wait_until(
        lambda: (m := Mapping.objects.get(pk=mapping.pk)).messages_count == 5 and m,
        "the counts to be written",
    )
    wait_until(lambda: Broker.objects.get(pk=broker.pk).unclaimed_count, "the unclaimed topic to be counted")
    assert (row.malformed_count, row.rejected_count, row.unknown_sensor_count) == (2, 1, 1)
    assert row.messages_count == 5 and row.readings_count == 1
    last = row.last_problems
    assert last["malformed"]["payload"] == '{"ENERGY": {"Power": "lots"}}' and last["malformed"]["count"] == 2
    assert "not a number" in last["malformed"]["reason"]
    assert "outside the physical range" in last["rejected"]["reason"]
    assert last["unknown_sensor"]["topic"] == "tele/plug-b/SENSOR"
    broker.refresh_from_db()
    assert broker.unclaimed_count == 1 and broker.last_unclaimed["topic"] == "tele/plug-a/STATE"
    conn = next(iter(worker.connections.values()))
    counts = conn.counts
    assert (counts.malformed, counts.rejected, counts.unknown_sensors, counts.unknown_topics) == (2, 1, 1, 1)
    assert values("plug-a", "power") == [7.0]


# --- connection states ------------------------------------------------------------------------


def health_of(name: str) -> dict[str, Any]:
    body = Client().get("/health").json()
    return body["mqtt"]["brokers"][name]


def test_a_connected_broker_is_shown_on_health(mosquitto: Mosquitto, ingester: Any) -> None:
    broker = broker_for(mosquitto)
    mqtt_services.mapping_create(broker=broker, name="t", preset="tasmota", register_unknown=True)
    worker = ingester()
    publish(mosquitto, [("tele/plug/SENSOR", '{"ENERGY": {"Power": 12}}')])
    wait_until(lambda: values("plug", "power"), "the reading")
    # Counted once readings_ingest returns, which is after the readings are visible.
    conn = next(iter(worker.connections.values()))
    wait_until(lambda: conn.counts.readings_stored == 1, "the batch to be counted")
    worker.publish_state()
    site = health_of("site")
    assert site["connected"] is True and site["error"] == ""
    assert site["messages_in"] == 1 and site["readings_stored"] == 1 and site["rejected"] == 0
    assert site["last_message_age_s"] is not None and site["last_message_age_s"] < 30


def test_a_broker_that_is_down_is_a_state_not_a_crash(ingester: Any) -> None:
    from ingestion.tests.test_mqtt_broker import free_port

    broker = Broker.objects.create(name="site", host="127.0.0.1", port=free_port())
    mqtt_services.mapping_create(broker=broker, name="t", preset="tasmota")
    worker = ingester(subscribed=False)
    conn = next(iter(worker.connections.values()))
    wait_until(lambda: conn.error_kind == "connect", "the refused connection")
    assert "refused the connection" in conn.error
    worker.publish_state()
    assert health_of("site")["connected"] is False and health_of("site")["error_kind"] == "connect"


def test_a_wrong_password_is_a_clear_state(mosquitto_factory: Any, ingester: Any) -> None:
    server = mosquitto_factory("auth", users={"ingest": "right-password"})
    broker = broker_for(server, username="ingest", password="wrong-password")
    mqtt_services.mapping_create(broker=broker, name="t", preset="tasmota")
    worker = ingester(subscribed=False)
    conn = next(iter(worker.connections.values()))
    wait_until(lambda: conn.error_kind == "auth", "the refused login")
    assert "refused the login" in conn.error and not conn.connected
    worker.publish_state()
    assert health_of("site")["error_kind"] == "auth"
    # Put right, the ingester connects within its reload interval.
    Broker.objects.filter(pk=broker.pk).update(password="right-password", updated_at=timezone.now())
    wait_until(
        lambda: any(c.connected for c in worker.connections.values()), "the login with the right password"
    )


def test_tls_with_the_brokers_ca_connects_and_an_untrusted_certificate_is_a_clear_state(
    mosquitto_factory: Any, ingester: Any, secrets_dir: Any
) -> None:
    server = mosquitto_factory("tls", tls=True)
    trusted = secrets_dir / "broker-ca.pem"
    shutil.copyfile(server.certfile, trusted)
    stranger, _ = make_certificate(secrets_dir / "other", "stranger")
    good = broker_for(server, name="good", tls=True, ca_file=str(trusted))
    bad = broker_for(server, name="bad", tls=True, ca_file=str(stranger))
    for row in (good, bad):
        mqtt_services.mapping_create(broker=row, name="t", preset="tasmota", register_unknown=True)
    worker = ingester(subscribed=False)
    conns = {c.name: c for c in worker.connections.values()}
    assert conns["good"].subscribed.wait(15), conns["good"].error
    wait_until(lambda: conns["bad"].error_kind == "tls", "the refused certificate")
    assert "not trusted" in conns["bad"].error and not conns["bad"].connected
    publish(server, [("tele/secure/SENSOR", '{"ENERGY": {"Power": 3}}')])
    wait_until(lambda: values("secure", "power"), "the reading over TLS")
    worker.publish_state()
    assert health_of("bad")["error_kind"] == "tls" and health_of("good")["connected"] is True


def test_a_stored_batch_reaches_the_live_feed_like_any_other(mosquitto: Mosquitto, ingester: Any) -> None:
    from energy_dashboard.core import events

    heard: list[dict[str, Any]] = []

    def receiver(sender: Any, readings: Any, source: str, **kwargs: Any) -> None:
        heard.append({"source": source, "readings": list(readings)})

    events.energy_data.connect(receiver, weak=False, dispatch_uid="test-mqtt-live")
    try:
        broker = broker_for(mosquitto)
        mqtt_services.mapping_create(broker=broker, name="t", preset="tasmota", register_unknown=True)
        ingester()
        publish(mosquitto, [(f"tele/plug{n}/SENSOR", f'{{"ENERGY": {{"Power": {n}}}}}') for n in range(3)])
        wait_until(lambda: sum(len(h["readings"]) for h in heard) >= 3, "the energy_data event")
    finally:
        events.energy_data.disconnect(dispatch_uid="test-mqtt-live")
    assert {h["source"] for h in heard} == {"mqtt"}
    sent = sorted((r["sensor_id"], r["metric"], r["value"]) for h in heard for r in h["readings"])
    assert sent == [("plug0", "power", 0.0), ("plug1", "power", 1.0), ("plug2", "power", 2.0)]


def test_a_client_certificate_is_presented_when_the_broker_requires_one(
    mosquitto_factory: Any, ingester: Any, secrets_dir: Any
) -> None:
    client_ca, cert, key = make_client_certificate(secrets_dir / "client")
    server = mosquitto_factory("mtls", tls=True, client_ca=client_ca)
    trusted = secrets_dir / "broker-ca.pem"
    shutil.copyfile(server.certfile, trusted)
    with_cert = broker_for(
        server,
        name="with-cert",
        tls=True,
        ca_file=str(trusted),
        client_cert_file=str(cert),
        client_key_file=str(key),
    )
    without = broker_for(server, name="without", tls=True, ca_file=str(trusted))
    for row in (with_cert, without):
        mqtt_services.mapping_create(broker=row, name="t", preset="tasmota", register_unknown=True)
    worker = ingester(subscribed=False)
    conns = {c.name: c for c in worker.connections.values()}
    assert conns["with-cert"].subscribed.wait(15), conns["with-cert"].error
    wait_until(lambda: conns["without"].error, "the broker to refuse the client without a certificate")
    assert not conns["without"].connected and conns["without"].error_kind in ("tls", "connect")


def test_a_broker_whose_tls_files_cannot_be_read_is_a_clear_state(secrets_dir: Any) -> None:
    broker = Broker.objects.create(
        name="site", host="127.0.0.1", port=8883, tls=True, ca_file=str(secrets_dir / "missing-ca.pem")
    )
    mqtt_services.mapping_create(broker=broker, name="t", preset="tasmota")
    worker = Ingester(batch_seconds=0.05)
    worker.reload()
    assert not worker.connections and "cannot be used" in worker.unusable["site"]
    worker.publish_state()
    site = health_of("site")
    assert site["connected"] is False and site["error_kind"] == "config" and "cannot be used" in site["error"]


def test_the_brokers_address_is_checked_again_at_every_connection(
    mosquitto: Mosquitto, ingester: Any, settings: Any
) -> None:
    broker = broker_for(mosquitto)
    mqtt_services.mapping_create(broker=broker, name="t", preset="tasmota")
    settings.INGESTION_ALLOWED_NETWORKS = []  # loopback no longer allowed after the broker was saved
    worker = ingester(subscribed=False)
    conn = next(iter(worker.connections.values()))
    wait_until(lambda: conn.error_kind == "address", "the refused address")
    assert "INGESTION_ALLOWED_NETWORKS" in conn.error and not conn.connected
