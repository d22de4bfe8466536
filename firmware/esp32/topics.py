# The node's topic names (docs/protocol.md), formatted in one place from the
# configuration's base topic and node id. tests/firmware/test_topics.py checks them
# against the integration's protocol.py.


def node_topic(config, leaf):
    return "%s/node/%s/%s" % (config["base"], config["node_id"], leaf)


def log_topic(config, level):
    return "%s/log/%s/%s" % (config["base"], level, config["node_id"])


def login_topic(config):
    return "%s/login/%s" % (config["base"], config["node_id"])
