package extbroker

import (
	"context"
	"testing"
)

type nopIngester struct{}

func (nopIngester) Ingest(context.Context, string, string, []byte) (byte, error) { return 0, nil }

func TestNewChecksConfig(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{URL: "mqtt://127.0.0.1:1883", ClientID: "a"}, true},
		{Config{URL: "tcp://h:1883", ClientID: "a"}, true},
		{Config{URL: "mqtts://h:8883", ClientID: "a"}, true},
		{Config{URL: "mqtt://h:1883"}, false},              // no client id
		{Config{URL: "mqtt://h", ClientID: "a"}, false},    // no port
		{Config{URL: "http://h:80", ClientID: "a"}, false}, // scheme
		{Config{URL: "mqtts://h:8883", ClientID: "a", CAFile: "/nonexistent"}, false},
	} {
		_, err := New(c.cfg, nopIngester{})
		if (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.cfg, err)
		}
	}
	if _, err := New(Config{URL: "mqtt://h:1", ClientID: "a"}, nil); err == nil {
		t.Error("nil ingester accepted")
	}
}

func TestPermanent(t *testing.T) {
	for code, want := range map[byte]bool{0x99: true, 0x87: true, 0x97: false, 0x80: false} {
		if permanent(code) != want {
			t.Errorf("permanent(0x%02x) = %v", code, !want)
		}
	}
}
