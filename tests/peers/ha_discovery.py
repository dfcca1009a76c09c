"""Home Assistant's own MQTT discovery code judging Porter's discovery configs.

Reads `mosquitto_sub -v` lines (`TOPIC PAYLOAD`) on stdin and takes each the
way Home Assistant's MQTT integration (PyPI `homeassistant`, pinned in
scripts/install-test-deps.sh) takes a discovery message, with its own code
and tables, without running Home Assistant:

- the topic, by discovery.py's TOPIC_MATCHER and SUPPORTED_COMPONENTS;
- the payload, by homeassistant.util.json's json_loads_object, its
  abbreviations expanded with abbreviations.py's tables (the loop of
  discovery.py's async_discovery_message_received) and its origin checked
  by MQTT_ORIGIN_INFO_SCHEMA;
- the platform's DISCOVERY_SCHEMA (what Home Assistant applies; it drops
  unknown keys silently), then its PLATFORM_SCHEMA_MODERN, which refuses
  them, so a key Home Assistant would ignore is an error here;
- a sensor's unit and state class against the sensor integration's
  DEVICE_CLASS_UNITS and DEVICE_CLASS_STATE_CLASSES (what its entity warns
  about at run time);
- with `--state TOPIC=FILE`, every value template whose state topic (or
  availability topic) is TOPIC rendered by Home Assistant's template engine
  against FILE's payload, the way the MQTT entity renders a message.

Prints one JSON line per config: {"topic", "ok": true, "rendered": {...}} or
{"topic", "ok": false, "error": Home Assistant's message}; exits 1 if any
config was refused, 2 if no config was read at all.
"""

import argparse
import asyncio
import importlib
import json
import sys
import tempfile

import voluptuous as vol
from homeassistant.components.mqtt import abbreviations
from homeassistant.components.mqtt.discovery import SUPPORTED_COMPONENTS, TOPIC_MATCHER
from homeassistant.components.mqtt.mixins import MQTT_ORIGIN_INFO_SCHEMA
from homeassistant.components.sensor import DEVICE_CLASS_STATE_CLASSES, DEVICE_CLASS_UNITS
from homeassistant.core import HomeAssistant
from homeassistant.helpers.template import Template
from homeassistant.util.json import json_loads_object


def expand(payload):
    """discovery.py's expansion of abbreviated keys, with its tables."""
    for key in list(payload):
        payload[abbreviations.ABBREVIATIONS.get(key, key)] = payload.pop(key)
    if isinstance(payload.get("device"), dict):
        device = payload["device"]
        for key in list(device):
            device[abbreviations.DEVICE_ABBREVIATIONS.get(key, key)] = device.pop(key)
    if isinstance(payload.get("origin"), dict):
        origin = payload["origin"]
        for key in list(origin):
            origin[abbreviations.ORIGIN_ABBREVIATIONS.get(key, key)] = origin.pop(key)
    availability = payload.get("availability")
    for conf in availability if isinstance(availability, list) else []:
        if isinstance(conf, dict):
            for key in list(conf):
                conf[abbreviations.ABBREVIATIONS.get(key, key)] = conf.pop(key)
    return payload


HASS = None


def render(template, state):
    """The template's value for a state message, as an MQTT entity renders it."""
    template.hass = HASS
    return str(template.async_render_with_possible_json_value(state, "<render error>"))


def judge(topic, text, prefix, states):
    trimmed = topic.replace(f"{prefix}/", "", 1)
    match = TOPIC_MATCHER.match(trimmed)
    if not match:
        return "Home Assistant's TOPIC_MATCHER refuses the discovery topic", None
    component = match.group("component")
    if component not in SUPPORTED_COMPONENTS:
        return f"Integration {component} is not supported", None
    try:
        payload = expand(dict(json_loads_object(text)))
    except ValueError as ex:
        return f"Unable to parse JSON: {ex}", None
    if "origin" in payload:
        try:
            MQTT_ORIGIN_INFO_SCHEMA(payload["origin"])
        except vol.Invalid as ex:
            return f"origin: {ex}", None
    payload["platform"] = "mqtt"
    module = importlib.import_module(f"homeassistant.components.mqtt.{component}")
    try:
        config = module.DISCOVERY_SCHEMA(json.loads(json.dumps(payload)))
    except vol.Invalid as ex:
        return f"DISCOVERY_SCHEMA: {ex}", None
    try:
        # As configuration.yaml gives it: without the platform discovery adds.
        module.PLATFORM_SCHEMA_MODERN({k: v for k, v in json.loads(json.dumps(payload)).items() if k != "platform"})
    except vol.Invalid as ex:
        return f"PLATFORM_SCHEMA_MODERN (a key Home Assistant ignores?): {ex}", None
    if component == "sensor" and config.get("device_class"):
        dc = config["device_class"]
        unit = config.get("unit_of_measurement")
        if dc in DEVICE_CLASS_UNITS and unit not in DEVICE_CLASS_UNITS[dc]:
            return f"unit {unit!r} is not valid for device class {dc} (DEVICE_CLASS_UNITS)", None
        sc = config.get("state_class")
        if sc and dc in DEVICE_CLASS_STATE_CLASSES and sc not in DEVICE_CLASS_STATE_CLASSES[dc]:
            return f"state class {sc} is not valid for device class {dc}", None
    rendered = {}
    if config.get("state_topic") in states and isinstance(config.get("value_template"), Template):
        rendered["value"] = render(config["value_template"], states[config["state_topic"]])
    for conf in config.get("availability") or []:
        if conf.get("topic") in states and isinstance(conf.get("value_template"), Template):
            rendered["availability"] = render(conf["value_template"], states[conf["topic"]])
    return None, rendered


async def main():
    # A bare Home Assistant core (not started: no integrations, no
    # network), for the template engine only.
    global HASS
    with tempfile.TemporaryDirectory() as config_dir:
        HASS = HomeAssistant(config_dir)
        return run()


def run():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", default="homeassistant")
    ap.add_argument("--state", action="append", default=[], help="TOPIC=FILE: a state message to render")
    args = ap.parse_args()
    states = {}
    for s in args.state:
        t, f = s.split("=", 1)
        with open(f, encoding="utf-8") as fh:
            states[t] = fh.read()
    seen = refused = 0
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        topic, _, text = line.partition(" ")
        if not text:
            continue  # an emptied (removal) message: not a config
        seen += 1
        error, rendered = judge(topic, text, args.prefix, states)
        if error:
            refused += 1
            print(json.dumps({"topic": topic, "ok": False, "error": error}), flush=True)
        else:
            print(json.dumps({"topic": topic, "ok": True, "rendered": rendered}), flush=True)
    return 2 if seen == 0 else 1 if refused else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
