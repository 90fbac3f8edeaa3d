package broker

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"time"

	"loadwatch/internal/registry"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TopicPrefix is the root of loadwatch's topics: loadwatch/v1/<device>/...
const TopicPrefix = "loadwatch/v1/"

// hook authenticates, enforces the ACL and ingests.
type hook struct {
	mqtt.HookBase
	b   *Broker
	srv *mqtt.Server

	principals sync.Map // client id -> registry.Principal of its live connection
}

func (h *hook) ID() string { return "loadwatch-auth-acl-ingest" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnectAuthenticate,
		mqtt.OnACLCheck,
		mqtt.OnPublish,
		mqtt.OnDisconnect,
	}, []byte{b})
}

func (h *hook) touch(id string) {
	if s, ok := h.b.auth.(SeenRecorder); ok {
		s.TouchLastSeen(id, time.Now())
	}
}

// adminClientID reports whether an admin may use a client id: its name, or
// its name, ':' and anything (':' cannot occur in a device id, so an admin
// never takes over a device's session by accident).
func adminClientID(admin, clientID string) bool {
	return clientID == admin || strings.HasPrefix(clientID, admin+":")
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	p, err := h.b.auth.Authenticate(h.b.ctx, user, string(pk.Connect.Password))
	if err != nil {
		h.b.stats.authFailures.Add(1)
		h.b.log.Info("mqtt connect refused", "client", cl.ID, "user", user, "remote", cl.Net.Remote, "error", err)
		return false
	}
	switch {
	case p.Admin && !adminClientID(p.ID, cl.ID):
		h.b.stats.authFailures.Add(1)
		h.b.log.Info("mqtt connect refused: an admin client id must be the user name or start with it and ':'", "client", cl.ID, "user", user)
		return false
	case !p.Admin && cl.ID != p.ID:
		h.b.stats.authFailures.Add(1)
		h.b.log.Info("mqtt connect refused: a device's client id must equal its user name", "client", cl.ID, "user", user)
		return false
	}
	h.principals.Store(cl.ID, p)
	if !p.Admin {
		h.touch(p.ID)
	}
	return true
}

func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if v, ok := h.principals.Load(cl.ID); ok {
		if p := v.(registry.Principal); !p.Admin {
			h.touch(p.ID)
		}
	}
	// A take-over has already stored the new connection's principal under
	// the same id; only forget ours.
	if cl.StopCause() != packets.ErrSessionTakenOver {
		h.principals.Delete(cl.ID)
	}
}

// principal returns who a client is. A session restored from disk or
// offline has no live principal: its user name is its device id (the
// registry forbids devices named like the admin), which is all the read
// rules need.
func (h *hook) principal(cl *mqtt.Client) registry.Principal {
	if cl.Net.Inline {
		return registry.Principal{ID: "inline", Admin: true}
	}
	if v, ok := h.principals.Load(cl.ID); ok {
		return v.(registry.Principal)
	}
	u := string(cl.Properties.Username)
	if u == registry.AdminName && adminClientID(u, cl.ID) {
		return registry.Principal{ID: u, Admin: true}
	}
	return registry.Principal{ID: u}
}

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	p := h.principal(cl)
	var ok bool
	switch {
	case p.Admin:
		ok = true
	case write:
		ok = MayPublish(p, topic)
	default:
		ok = MayRead(p, topic)
	}
	if !ok {
		h.b.stats.aclDenied.Add(1)
		h.b.log.Debug("mqtt acl denied", "client", cl.ID, "topic", topic, "write", write)
	}
	return ok
}

// ownsDevice reports whether dev (`<id>` or `<id>.<addr>`) belongs to p.
// When p has registered meter addresses, only those sub-devices are its.
func ownsDevice(p registry.Principal, dev string) bool {
	id, addr, ok := registry.SplitSubDevice(dev)
	if !ok || id != p.ID {
		return false
	}
	return addr == 0 || len(p.Addrs) == 0 || slices.Contains(p.Addrs, addr)
}

// MayPublish is the device publish rule: loadwatch/v1/<dev>/<anything>
// for its own devices except the cmd topic itself (commands come from the
// server), and tele/<topic>/... and stat/<topic>/... for its Tasmota topic.
func MayPublish(p registry.Principal, topic string) bool {
	if p.Admin {
		return true
	}
	if rest, ok := strings.CutPrefix(topic, TopicPrefix); ok {
		dev, sub, ok := strings.Cut(rest, "/")
		return ok && sub != "" && sub != "cmd" && ownsDevice(p, dev) && !strings.ContainsAny(sub, "+#")
	}
	if p.TasmotaTopic == "" {
		return false
	}
	for _, pre := range []string{"tele/", "stat/"} {
		if rest, ok := strings.CutPrefix(topic, pre); ok {
			t, sub, ok := strings.Cut(rest, "/")
			return ok && t == p.TasmotaTopic && sub != ""
		}
	}
	return false
}

// MayRead is the device subscribe (and delivery) rule: its own command
// topics loadwatch/v1/<dev>/cmd and below, and cmnd/<topic>/... for its
// Tasmota topic. Wildcards are allowed only below those.
func MayRead(p registry.Principal, filter string) bool {
	if p.Admin {
		return true
	}
	if rest, ok := strings.CutPrefix(filter, TopicPrefix); ok {
		dev, sub, ok := strings.Cut(rest, "/")
		return ok && ownsDevice(p, dev) && (sub == "cmd" || strings.HasPrefix(sub, "cmd/"))
	}
	if p.TasmotaTopic != "" {
		if rest, ok := strings.CutPrefix(filter, "cmnd/"+p.TasmotaTopic+"/"); ok {
			return rest != ""
		}
	}
	return false
}

// refusal maps an Ingester's answer to a PUBACK reason code, 0 if accepted.
func refusal(reason byte, err error) byte {
	switch {
	case reason == 0 && err == nil:
		return 0
	case reason == 0:
		return ReasonUnspecified
	}
	switch reason {
	case ReasonUnspecified, ReasonImplementation, ReasonNotAuthorized, ReasonTopicInvalid, ReasonQuotaExceeded, ReasonPayloadInvalid:
		return reason
	}
	return ReasonUnspecified // not a valid PUBACK code
}

// permanent reports whether a refusal is final for the message (the agent
// dead-letters those; it retries the others).
func permanent(code byte) bool {
	return code == ReasonPayloadInvalid || code == ReasonNotAuthorized || code == ReasonTopicInvalid
}

var reasonText = map[byte]string{
	ReasonUnspecified:    "unspecified error",
	ReasonImplementation: "implementation specific error",
	ReasonNotAuthorized:  "not authorized",
	ReasonTopicInvalid:   "topic name invalid",
	ReasonQuotaExceeded:  "quota exceeded",
	ReasonPayloadInvalid: "payload format invalid",
}

// OnPublish runs before mochi acknowledges the message. Returning a
// packets.Code (unwrapped: mochi type-asserts it) makes mochi send that
// code in the PUBACK (MQTT 5, QoS > 0) and drop the message.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	p := h.principal(cl)
	if !p.Admin {
		h.touch(p.ID)
	}
	var code byte
	var err error
	if !MayPublish(p, pk.TopicName) { // mochi checked the ACL before resolving a topic alias
		code = ReasonNotAuthorized
		h.b.stats.aclDenied.Add(1)
	} else if h.b.ing != nil {
		var reason byte
		reason, err = h.b.ing.Ingest(h.b.ctx, cl.ID, pk.TopicName, pk.Payload)
		code = refusal(reason, err)
	}
	if code == 0 {
		h.b.stats.ingested.Add(1)
		return pk, nil
	}
	h.b.stats.refused[code].Add(1)
	h.b.log.Debug("mqtt publish refused", "client", cl.ID, "topic", pk.TopicName, "reason", code, "error", err)
	switch {
	case pk.FixedHeader.Qos == 0:
		return pk, packets.ErrRejectPacket // nothing to acknowledge; not delivered
	case cl.Properties.ProtocolVersion == 5:
		return pk, packets.Code{Code: code, Reason: reasonText[code]}
	case permanent(code):
		// MQTT 3.1.1 has no negative PUBACK. A message that can never be
		// accepted is acknowledged and discarded (not delivered), or the
		// client would resend it for ever.
		return pk, packets.CodeSuccessIgnore
	default:
		// A retryable refusal: close the connection without a PUBACK, so
		// the 3.1.1 client keeps the message and resends it on reconnect.
		cl.Stop(packets.ErrServerBusy)
		return pk, packets.ErrRejectPacket
	}
}
