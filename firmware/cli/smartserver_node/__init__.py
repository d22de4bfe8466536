"""Manage smartserver ESP32 nodes over MQTT."""
