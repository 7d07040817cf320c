"""Readings over MQTT (docs/mqtt.md): brokers and mappings as data, presets for the devices
buildings have, and the ingester process (`manage.py mqtt_ingest`) that subscribes at QoS 1 on
a persistent session and acknowledges each message only once its readings are committed."""
