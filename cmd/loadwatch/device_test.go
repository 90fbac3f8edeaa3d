package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"loadwatch/internal/registry"
)

func TestDeviceCommands(t *testing.T) {
	ctx := context.Background()
	flags := registryFlags{Data: t.TempDir(), JSON: true}
	var out bytes.Buffer
	if err := (&deviceListCmd{registryFlags: flags}).run(ctx, &out); err == nil || !strings.Contains(err.Error(), "no device registry") {
		t.Fatalf("list before any add: %v", err)
	}

	add := deviceAddCmd{registryFlags: flags, ID: "pi", Addr: []int{2, 1}}
	if err := add.run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	var added struct{ ID, Token string }
	if err := json.Unmarshal(out.Bytes(), &added); err != nil || added.ID != "pi" || !strings.HasPrefix(added.Token, "lwd_") {
		t.Fatalf("add --json printed %q (%v)", out.String(), err)
	}

	for _, tc := range []struct {
		cmd  deviceAddCmd
		want error
	}{
		{deviceAddCmd{registryFlags: flags, ID: "pi"}, registry.ErrExists},
		{deviceAddCmd{registryFlags: flags, ID: "a/b"}, registry.ErrInvalid},
		{deviceAddCmd{registryFlags: flags, ID: "pi.1"}, registry.ErrInvalid},
		{deviceAddCmd{registryFlags: flags, ID: "x", TasmotaTopic: "t", TZ: "Nowhere/City"}, registry.ErrInvalid},
	} {
		if err := tc.cmd.run(ctx, &out); !errors.Is(err, tc.want) {
			t.Errorf("add %q: %v, want %v", tc.cmd.ID, err, tc.want)
		}
	}
	for _, err := range []error{
		(&deviceShowCmd{registryFlags: flags, ID: "ghost"}).run(ctx, &out),
		(&deviceRevokeCmd{registryFlags: flags, ID: "ghost"}).run(ctx, &out),
		(&deviceRotateCmd{registryFlags: flags, ID: "ghost"}).run(ctx, &out),
		(&deviceDeleteCmd{registryFlags: flags, ID: "ghost"}).run(ctx, &out),
	} {
		if !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("unknown id: %v", err)
		}
	}

	out.Reset()
	if err := (&deviceRevokeCmd{registryFlags: flags, ID: "pi"}).run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := (&deviceListCmd{registryFlags: flags}).run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	var list []registry.Device
	if err := json.Unmarshal(out.Bytes(), &list); err != nil || len(list) != 1 || list[0].Revoked.IsZero() || len(list[0].Addrs) != 2 {
		t.Fatalf("list --json: %s (%v)", out.String(), err)
	}

	out.Reset()
	if err := (&deviceRotateCmd{registryFlags: flags, ID: "pi"}).run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	var rotated struct{ Token string }
	_ = json.Unmarshal(out.Bytes(), &rotated)
	r, err := registry.Open(ctx, registry.Path(flags.Data), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Authenticate(ctx, "pi", rotated.Token); err != nil {
		t.Fatalf("rotated token: %v", err)
	}
	if _, err := r.Authenticate(ctx, "pi", added.Token); err == nil {
		t.Fatal("old token still works after rotate")
	}

	text := registryFlags{Data: flags.Data}
	out.Reset()
	if err := (&deviceShowCmd{registryFlags: text, ID: "pi"}).run(ctx, &out); err != nil || !strings.Contains(out.String(), "addresses:      1,2") {
		t.Fatalf("show: %q %v", out.String(), err)
	}
	out.Reset()
	if err := (&deviceDeleteCmd{registryFlags: text, ID: "pi", Purge: true}).run(ctx, &out); err != nil || !strings.Contains(out.String(), "queued") {
		t.Fatalf("delete --purge: %q %v", out.String(), err)
	}
	if ps, _ := r.PendingPurges(ctx); len(ps) != 1 || ps[0].Device != "pi" {
		t.Fatalf("pending purges %v", ps)
	}
}
