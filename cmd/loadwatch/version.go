package main

import (
	"encoding/json"
	"fmt"
	"os"

	"loadwatch/internal/buildinfo"
)

type versionCmd struct {
	JSON bool `help:"Print one JSON object instead of a line."`
}

func (v *versionCmd) Run() error {
	info := buildinfo.Get("loadwatch")
	if v.JSON {
		return json.NewEncoder(os.Stdout).Encode(info)
	}
	_, err := fmt.Println(info)
	return err
}
