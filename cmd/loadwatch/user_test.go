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

func TestUserCommands(t *testing.T) {
	ctx := context.Background()
	flags := registryFlags{Data: t.TempDir()}
	var out bytes.Buffer
	stdin := passwordFlags{PasswordStdin: true}
	if err := (&userAddCmd{registryFlags: flags, passwordFlags: stdin, Name: "alice"}).run(ctx, strings.NewReader("correct horse battery\n"), &out); err != nil {
		t.Fatal(err)
	}
	if err := (&userAddCmd{registryFlags: flags, passwordFlags: stdin, Name: "bob"}).run(ctx, strings.NewReader("short\n"), &out); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("short password: %v", err)
	}
	if err := (&userAddCmd{registryFlags: flags, passwordFlags: stdin, Name: "alice"}).run(ctx, strings.NewReader("another long one\n"), &out); !errors.Is(err, registry.ErrExists) {
		t.Errorf("second add: %v", err)
	}
	if err := (&userPasswdCmd{registryFlags: flags, passwordFlags: stdin, Name: "alice"}).run(ctx, strings.NewReader("a new long password"), &out); err != nil {
		t.Fatal(err)
	}
	r, err := registry.Open(ctx, registry.Path(flags.Data), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CheckPassword(ctx, "alice", "a new long password"); err != nil {
		t.Errorf("new password refused: %v", err)
	}
	if err := r.CheckPassword(ctx, "alice", "correct horse battery"); !errors.Is(err, registry.ErrBadCredentials) {
		t.Errorf("old password: %v", err)
	}
	r.Close()
	out.Reset()
	if err := (&userListCmd{registryFlags: registryFlags{Data: flags.Data, JSON: true}}).run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	var us []registry.User
	if err := json.Unmarshal(out.Bytes(), &us); err != nil || len(us) != 1 || us[0].Name != "alice" {
		t.Errorf("list: %q %v", out.String(), err)
	}
	if err := (&userDeleteCmd{registryFlags: flags, Name: "alice"}).run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	if err := (&userDeleteCmd{registryFlags: flags, Name: "alice"}).run(ctx, &out); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if err := (&userListCmd{registryFlags: registryFlags{Data: t.TempDir()}}).run(ctx, &out); err == nil {
		t.Errorf("list on a wrong --data succeeded")
	}
}
