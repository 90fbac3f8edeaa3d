package main

import "loadwatch/internal/pzemcli"

// pzemCmd is the PZEM-004T link tool: read, scan, set-address, set-alarm,
// reset-energy and calibrate (shared with loadwatch-agent).
type pzemCmd = pzemcli.Cmd
