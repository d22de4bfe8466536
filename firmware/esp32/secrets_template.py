# Secrets: copy to secrets.py (never commit it). Put the broker's CA certificate
# (PEM) next to it as ca.pem.
SECRETS = {
    "wifi": {"ssid": "my-wifi", "password": "wifi-password"},
    "broker": {
        "host": "192.168.1.10",
        "port": 8883,
        "server_hostname": "mqtt.example.lan",  # name in the broker's certificate; default: host
        "ca": "ca.pem",
        "user": "node-user",
        "password": "node-password",
        # "insecure_plain_mqtt": True,  # no TLS at all (logged as a warning on every connect)
    },
    # The node's command key, the same as configured for this node in HA.
    "key": "replace with a long random string",
}
