package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"
)

// sessionStore persists what a broker restart must not lose: persistent
// sessions (clients whose session outlives the connection), their
// subscriptions, the QoS 1/2 messages queued for them, and retained
// messages. It is our own hook rather than mochi's bolt hook because that
// one writes (and fsyncs) twice for every inbound QoS 1 message (mochi
// records the PUBACK as an inflight entry and deletes it a moment later)
// and stores clean sessions too; that would cap ingest at a few hundred
// messages per second. Here only outbound messages to persistent sessions
// are written, so a command queued for a sleeping device costs one fsync and
// telemetry costs none.
//
// A clean-start CONNECT and the end of a non-persistent session delete what
// is stored for the client. Most clients (devices that do not sleep, every
// MQTT 3.1.1 clean session) never have anything stored, so an in-memory
// index of the client ids that may have something on disk, loaded at Init,
// lets those skip the read-write transaction and its fsync: a connect then
// costs no disk write at all.
type sessionStore struct {
	mqtt.HookBase
	path string

	mu       sync.RWMutex // guards db against use after Stop
	db       *bbolt.DB
	inflight map[string]struct{} // keys of inflight messages on disk
	failures atomic.Int64        // writes that failed
	writes   atomic.Int64        // read-write transactions committed

	// stored holds every client id that may have a record, subscription
	// or inflight message on disk (a superset: an entry may outlive what it
	// stood for until the next delete). Its value counts marks, so that a
	// delete that raced with a write keeps the entry (see deleteClient).
	idxMu  sync.Mutex
	stored map[string]uint64
}

var (
	bucketClients  = []byte("clients")
	bucketSubs     = []byte("subscriptions")
	bucketInflight = []byte("inflight")
	bucketRetained = []byte("retained")
)

func newSessionStore(path string) *sessionStore {
	return &sessionStore{path: path, inflight: map[string]struct{}{}, stored: map[string]uint64{}}
}

func (h *sessionStore) ID() string { return "loadwatch-sessions" }

func (h *sessionStore) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnSessionEstablished,
		mqtt.OnWillSent,
		mqtt.OnDisconnect,
		mqtt.OnSubscribed,
		mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage,
		mqtt.OnRetainedExpired,
		mqtt.OnQosPublish,
		mqtt.OnQosComplete,
		mqtt.OnQosDropped,
		mqtt.OnClientExpired,
		mqtt.StoredClients,
		mqtt.StoredSubscriptions,
		mqtt.StoredInflightMessages,
		mqtt.StoredRetainedMessages,
	}, []byte{b})
}

func (h *sessionStore) Init(any) error {
	db, err := bbolt.Open(h.path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("broker: session store %s: %w (is another broker using this data directory?)", h.path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketClients, bucketSubs, bucketInflight, bucketRetained} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = db.View(h.loadIndex)
	}
	if err != nil {
		db.Close()
		return fmt.Errorf("broker: session store %s: %w", h.path, err)
	}
	h.mu.Lock()
	h.db = db
	h.mu.Unlock()
	return nil
}

func (h *sessionStore) Stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.db == nil {
		return nil
	}
	err := h.db.Close()
	h.db = nil
	return err
}

// loadIndex fills the index of clients that have something stored.
func (h *sessionStore) loadIndex(tx *bbolt.Tx) error {
	h.idxMu.Lock()
	defer h.idxMu.Unlock()
	err := tx.Bucket(bucketClients).ForEach(func(k, _ []byte) error {
		h.stored[string(k)]++
		return nil
	})
	for _, b := range [][]byte{bucketSubs, bucketInflight} {
		if err != nil {
			return err
		}
		err = tx.Bucket(b).ForEach(func(k, _ []byte) error {
			if i := bytes.IndexByte(k, 0); i >= 0 { // keys are id, 0, rest
				h.stored[string(k[:i])]++
			}
			return nil
		})
	}
	return err
}

// mark records that id may have something on disk. Writers call it before
// and after their write: the first keeps a delete that runs meanwhile from
// dropping the entry, the second restores it if the delete finished first.
func (h *sessionStore) mark(id string) {
	h.idxMu.Lock()
	h.stored[id]++
	h.idxMu.Unlock()
}

// hasStored reports whether id is in the index (for tests).
func (h *sessionStore) hasStored(id string) bool {
	h.idxMu.Lock()
	defer h.idxMu.Unlock()
	_, ok := h.stored[id]
	return ok
}

// persistent reports whether a client's session outlives its connection,
// with the rule mochi applies when it restores clients.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

func clientPrefix(id string) []byte { return append([]byte(id), 0) }

func inflightKey(id string, packetID uint16) []byte {
	return binary.BigEndian.AppendUint16(clientPrefix(id), packetID)
}

// update runs fn in a read-write transaction and reports whether it was
// committed.
func (h *sessionStore) update(fn func(tx *bbolt.Tx) error) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.db == nil {
		return false // stopped: the broker is shutting down
	}
	if err := h.db.Update(fn); err != nil {
		h.failures.Add(1)
		h.Log.Error("session store write failed", "error", err)
		return false
	}
	h.writes.Add(1)
	return true
}

func put(tx *bbolt.Tx, bucket, key []byte, v interface{ MarshalBinary() ([]byte, error) }) error {
	b, err := v.MarshalBinary()
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, b)
}

// deleteClient removes a client and everything stored for it. A client
// the index does not list has nothing stored: no transaction, no fsync.
func (h *sessionStore) deleteClient(id string) {
	h.idxMu.Lock()
	gen, ok := h.stored[id]
	h.idxMu.Unlock()
	if !ok {
		return
	}
	deleted := h.update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketClients).Delete([]byte(id)); err != nil {
			return err
		}
		p := clientPrefix(id)
		for _, name := range [][]byte{bucketSubs, bucketInflight} {
			c := tx.Bucket(name).Cursor()
			for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Seek(p) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	h.mu.Lock()
	for k := range h.inflight {
		if len(k) > len(id) && k[:len(id)+1] == id+"\x00" {
			delete(h.inflight, k)
		}
	}
	h.mu.Unlock()
	// Drop the entry unless a write marked it while we deleted (what it
	// wrote may have landed after our transaction). A failed delete
	// leaves the entry too, keeping the index a superset of the disk.
	h.idxMu.Lock()
	if deleted && h.stored[id] == gen {
		delete(h.stored, id)
	}
	h.idxMu.Unlock()
}

func (h *sessionStore) putClient(cl *mqtt.Client) {
	props := cl.Properties.Props.Copy(false)
	rec := &storage.Client{
		ID:              cl.ID,
		T:               storage.ClientKey,
		Remote:          cl.Net.Remote,
		Listener:        cl.Net.Listener,
		Username:        cl.Properties.Username,
		Clean:           cl.Properties.Clean,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval:     props.SessionExpiryInterval,
			SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod:      props.AuthenticationMethod,
			AuthenticationData:        props.AuthenticationData,
			RequestProblemInfo:        props.RequestProblemInfo,
			RequestProblemInfoFlag:    props.RequestProblemInfoFlag,
			RequestResponseInfo:       props.RequestResponseInfo,
			ReceiveMaximum:            props.ReceiveMaximum,
			TopicAliasMaximum:         props.TopicAliasMaximum,
			User:                      props.User,
			MaximumPacketSize:         props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}
	h.mark(cl.ID)
	h.update(func(tx *bbolt.Tx) error { return put(tx, bucketClients, []byte(cl.ID), rec) })
	h.mark(cl.ID)
}

func (h *sessionStore) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Properties.Clean { // a clean start discards the previous session
		h.deleteClient(cl.ID)
	}
	if persistent(cl) {
		h.putClient(cl)
	}
}

func (h *sessionStore) OnWillSent(cl *mqtt.Client, _ packets.Packet) {
	if persistent(cl) {
		h.putClient(cl)
	}
}

func (h *sessionStore) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire && !errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		h.deleteClient(cl.ID)
	}
}

func (h *sessionStore) OnClientExpired(cl *mqtt.Client) { h.deleteClient(cl.ID) }

func (h *sessionStore) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if !persistent(cl) {
		return
	}
	h.mark(cl.ID)
	defer h.mark(cl.ID)
	h.update(func(tx *bbolt.Tx) error {
		for i, f := range pk.Filters {
			if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
				continue // refused subscription
			}
			rec := &storage.Subscription{
				ID:                cl.ID + ":" + f.Filter,
				T:                 storage.SubscriptionKey,
				Client:            cl.ID,
				Qos:               codes[i],
				Filter:            f.Filter,
				Identifier:        f.Identifier,
				NoLocal:           f.NoLocal,
				RetainHandling:    f.RetainHandling,
				RetainAsPublished: f.RetainAsPublished,
			}
			if err := put(tx, bucketSubs, append(clientPrefix(cl.ID), f.Filter...), rec); err != nil {
				return err
			}
		}
		return nil
	})
}

func (h *sessionStore) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if !persistent(cl) {
		return
	}
	h.update(func(tx *bbolt.Tx) error {
		for _, f := range pk.Filters {
			if err := tx.Bucket(bucketSubs).Delete(append(clientPrefix(cl.ID), f.Filter...)); err != nil {
				return err
			}
		}
		return nil
	})
}

func message(cl *mqtt.Client, pk packets.Packet, t string, id string, sent int64) *storage.Message {
	props := pk.Properties.Copy(false)
	return &storage.Message{
		ID:          id,
		T:           t,
		Client:      cl.ID,
		Origin:      pk.Origin,
		FixedHeader: pk.FixedHeader,
		TopicName:   pk.TopicName,
		Payload:     pk.Payload,
		Sent:        sent,
		Created:     pk.Created,
		PacketID:    pk.PacketID,
		Properties: storage.MessageProperties{
			PayloadFormat:          props.PayloadFormat,
			PayloadFormatFlag:      props.PayloadFormatFlag,
			MessageExpiryInterval:  props.MessageExpiryInterval,
			ContentType:            props.ContentType,
			ResponseTopic:          props.ResponseTopic,
			CorrelationData:        props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier,
			TopicAlias:             props.TopicAlias,
			User:                   props.User,
		},
	}
}

func (h *sessionStore) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	h.update(func(tx *bbolt.Tx) error {
		if r == -1 {
			return tx.Bucket(bucketRetained).Delete([]byte(pk.TopicName))
		}
		return put(tx, bucketRetained, []byte(pk.TopicName), message(cl, pk, storage.RetainedKey, pk.TopicName, 0))
	})
}

func (h *sessionStore) OnRetainedExpired(topic string) {
	h.update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketRetained).Delete([]byte(topic)) })
}

// OnQosPublish stores a message queued for a persistent session. Inbound
// QoS flows (mochi records its PUBACK/PUBREC as inflight) are not stored:
// the publisher keeps those until acknowledged anyway.
func (h *sessionStore) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if t := pk.FixedHeader.Type; (t != packets.Publish && t != packets.Pubrel) || !persistent(cl) {
		return
	}
	key := inflightKey(cl.ID, pk.PacketID)
	h.mark(cl.ID)
	h.update(func(tx *bbolt.Tx) error {
		return put(tx, bucketInflight, key, message(cl, pk, storage.InflightKey, string(key), sent))
	})
	h.mark(cl.ID)
	h.mu.Lock()
	h.inflight[string(key)] = struct{}{}
	h.mu.Unlock()
}

// OnQosComplete forgets a delivered message; it costs a write only when the
// message was stored (so not for every inbound PUBACK).
func (h *sessionStore) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	key := inflightKey(cl.ID, pk.PacketID)
	h.mu.Lock()
	_, ok := h.inflight[string(key)]
	delete(h.inflight, string(key))
	h.mu.Unlock()
	if ok {
		h.update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketInflight).Delete(key) })
	}
}

func (h *sessionStore) OnQosDropped(cl *mqtt.Client, pk packets.Packet) { h.OnQosComplete(cl, pk) }

func (h *sessionStore) each(bucket []byte, fn func(k, v []byte) error) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.db == nil {
		return storage.ErrDBFileNotOpen
	}
	return h.db.View(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).ForEach(fn) })
}

func (h *sessionStore) StoredClients() ([]storage.Client, error) {
	var out []storage.Client
	err := h.each(bucketClients, func(_, v []byte) error {
		var c storage.Client
		if err := c.UnmarshalBinary(v); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

func (h *sessionStore) StoredSubscriptions() ([]storage.Subscription, error) {
	var out []storage.Subscription
	err := h.each(bucketSubs, func(_, v []byte) error {
		var s storage.Subscription
		if err := s.UnmarshalBinary(v); err != nil {
			return err
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

func (h *sessionStore) StoredInflightMessages() ([]storage.Message, error) {
	var out []storage.Message
	keys := map[string]struct{}{}
	err := h.each(bucketInflight, func(k, v []byte) error {
		var m storage.Message
		if err := m.UnmarshalBinary(v); err != nil {
			return err
		}
		keys[string(k)] = struct{}{}
		out = append(out, m)
		return nil
	})
	h.mu.Lock()
	for k := range keys {
		h.inflight[k] = struct{}{}
	}
	h.mu.Unlock()
	return out, err
}

func (h *sessionStore) StoredRetainedMessages() ([]storage.Message, error) {
	var out []storage.Message
	err := h.each(bucketRetained, func(_, v []byte) error {
		var m storage.Message
		if err := m.UnmarshalBinary(v); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	return out, err
}
