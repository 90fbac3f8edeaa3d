#!/bin/sh
# Creates mosquitto/passwd for the compose deployment from .env: the
# replicas' user "loadwatch" and, when HASS_BROKER_PASSWORD is set, "hass".
# Add devices with: mosquitto_passwd -b mosquitto/passwd <device-id> <token>
set -eu
cd "$(dirname "$0")"
. ./.env
mkdir -p mosquitto
: > mosquitto/passwd
mosquitto_passwd -b mosquitto/passwd loadwatch "$LOADWATCH_BROKER_PASSWORD"
if [ -n "${HASS_BROKER_PASSWORD:-}" ]; then
	mosquitto_passwd -b mosquitto/passwd hass "$HASS_BROKER_PASSWORD"
fi
chmod 600 mosquitto/passwd
echo "wrote mosquitto/passwd"
