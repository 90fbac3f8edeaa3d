package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"loadwatch/internal/outbox"
	"loadwatch/internal/telemetry"
)

// Reason codes the agent tells apart (MQTT 5).
const (
	reasonNotAuthorized byte = 0x87 // permanent: dead-letter
	reasonPayloadFormat byte = 0x99 // permanent: dead-letter
)

// RefusedError is a PUBACK refusal that is retried (0x97 quota exceeded,
// 0x80 unspecified, ...).
type RefusedError struct {
	Topic  string
	Reason byte
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("agent: publish to %s refused with reason 0x%02x (will retry)", e.Topic, e.Reason)
}

func permanent(reason byte) bool {
	return reason == reasonPayloadFormat || reason == reasonNotAuthorized
}

// hasPending reports whether any outbox holds unacknowledged records or an
// ack waits to be sent.
func (a *Agent) hasPending() bool {
	if len(a.acks) > 0 {
		return true
	}
	for _, s := range a.streams {
		if s.ob.Stats().Pending > 0 {
			return true
		}
	}
	return false
}

func (a *Agent) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// network is the network side: connect when there is something to send
// (or always, with AlwaysOn), publish everything pending in order, linger
// for commands, disconnect.
func (a *Agent) network(ctx context.Context) {
	if a.cfg.Dialer == nil {
		<-ctx.Done()
		return
	}
	alwaysOn := a.cfg.Duty.AlwaysOn
	var sess Session
	drop := func(clean bool) {
		if sess == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if err := sess.Close(cctx); err != nil && clean {
			a.log.Debug("agent: disconnect", "err", err)
		}
		cancel()
		sess = nil
		a.count(func(s *Stats) { s.Connected = false })
	}
	defer func() {
		a.goodbye(ctx, sess)
		drop(true)
	}()
	for {
		if sess == nil && !alwaysOn && !a.hasPending() {
			select {
			case <-ctx.Done():
				return
			case <-a.kick:
			}
		}
		if ctx.Err() != nil {
			return
		}
		if sess == nil {
			s, err := a.connect(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				a.count(func(s *Stats) { s.ConnectErrors++ })
				a.log.Warn("agent: cannot connect; readings stay in the outbox", "err", err, "retry_in", a.cfg.RetryDelay)
				a.sleep(ctx, a.cfg.RetryDelay)
				continue
			}
			sess = s
			a.count(func(s *Stats) { s.Connected = true })
		}
		if err := a.flush(ctx, sess); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.count(func(s *Stats) { s.PublishErrors++ })
			a.log.Warn("agent: publish failed; readings stay in the outbox", "err", err, "retry_in", a.cfg.RetryDelay)
			drop(false)
			a.sleep(ctx, a.cfg.RetryDelay)
			continue
		}
		if alwaysOn {
			select {
			case <-ctx.Done():
				return
			case <-a.kick:
			case <-sess.Done():
				a.log.Warn("agent: connection lost")
				drop(false)
			}
			continue
		}
		// Duty-cycled: stay a moment for commands queued while asleep,
		// then radio off.
		if err := a.linger(ctx, sess); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("agent: connection lost while lingering", "err", err)
			drop(false)
			continue
		}
		if a.hasPending() {
			continue
		}
		drop(true)
	}
}

// goodbye publishes status offline (retained) on a graceful shutdown, so
// that the server need not wait for a will that a clean DISCONNECT never
// triggers. A duty-cycled agent connects briefly for it. Best effort,
// bounded by 3 s.
func (a *Agent) goodbye(ctx context.Context, sess Session) {
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if sess == nil {
		s, err := a.cfg.Dialer.Dial(gctx, DialOptions{OnMessage: func(string, []byte) {}})
		if err != nil {
			a.log.Warn("agent: status offline not sent", "err", err)
			return
		}
		defer s.Close(gctx)
		sess = s
	}
	for _, id := range a.statusIDs() {
		if err := a.publish(gctx, sess, telemetry.Topic(id, telemetry.ChannelStatus), a.statusPayload(telemetry.StatusOffline, id), true, nil); err != nil {
			a.log.Warn("agent: status offline not sent", "err", err)
			return
		}
	}
}

// linger keeps the connection for Linger after the last activity, flushing
// acks and new reports as they come.
func (a *Agent) linger(ctx context.Context, sess Session) error {
	t := time.NewTimer(a.cfg.Linger)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sess.Done():
			return errors.New("connection closed")
		case <-t.C:
			return nil
		case <-a.kick:
			if err := a.flush(ctx, sess); err != nil {
				return err
			}
			t.Reset(a.cfg.Linger)
		}
	}
}

func (a *Agent) connect(ctx context.Context) (Session, error) {
	will := telemetry.Status{State: telemetry.StatusOffline, Firmware: a.cfg.Firmware}
	o := DialOptions{
		WillTopic:   telemetry.Topic(a.cfg.ID, telemetry.ChannelStatus),
		WillPayload: will.AppendJSON(nil),
		OnMessage:   a.inbound,
	}
	seen := map[string]bool{}
	var ids []string
	for _, d := range a.devs {
		ids = append(ids, d.id)
	}
	ids = append(ids, a.cfg.ID)
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			o.Subscribe = append(o.Subscribe, telemetry.Topic(id, telemetry.ChannelCmd))
		}
	}
	sess, err := a.cfg.Dialer.Dial(ctx, o)
	if err != nil {
		return nil, err
	}
	a.count(func(s *Stats) { s.Connects++ })
	a.statusDue.Store(false) // this status carries the latest link counters
	for _, id := range ids {
		if !seen[id] {
			continue
		}
		seen[id] = false
		if err := a.publish(ctx, sess, telemetry.Topic(id, telemetry.ChannelStatus), a.statusPayload(telemetry.StatusOnline, id), true, nil); err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			sess.Close(cctx)
			cancel()
			return nil, fmt.Errorf("status online: %w", err)
		}
	}
	return sess, nil
}

// publish sends one message and waits for its PUBACK. A refusal is a
// *RefusedError; refused, when not nil, receives the reason code instead.
func (a *Agent) publish(ctx context.Context, sess Session, topic string, payload []byte, retain bool, refused *byte) error {
	pctx, cancel := context.WithTimeout(ctx, a.cfg.PublishTimeout)
	defer cancel()
	a.count(func(s *Stats) { s.PublishInFlight, s.LastPublishStarted = true, a.cfg.Now() })
	reason, err := sess.Publish(pctx, topic, payload, retain)
	a.count(func(s *Stats) { s.PublishInFlight = false })
	if err != nil {
		return fmt.Errorf("agent: publish to %s: %w", topic, err)
	}
	if reason >= 0x80 {
		if refused != nil {
			*refused = reason
			return nil
		}
		return &RefusedError{Topic: topic, Reason: reason}
	}
	return nil
}

// flush sends a status refresh when one is due, the pending acks, then
// every stream's backlog in order.
func (a *Agent) flush(ctx context.Context, sess Session) error {
	if err := a.refreshStatus(ctx, sess); err != nil {
		return err
	}
	for {
		var k ack
		select {
		case k = <-a.acks:
		default:
			goto streams
		}
		if err := a.publish(ctx, sess, k.topic, k.payload, false, nil); err != nil {
			var re *RefusedError
			if !errors.As(err, &re) {
				return err
			}
			a.log.Warn("agent: command ack refused", "err", err)
		}
	}
streams:
	for _, st := range a.streams {
		for {
			n := 1
			if st.batch {
				n = a.cfg.Batch
			}
			recs, err := st.ob.Pending(n)
			if err != nil {
				return err
			}
			if len(recs) == 0 {
				break
			}
			if len(recs) > 1 {
				if err := a.sendBatch(ctx, sess, st, recs); err != nil {
					return err
				}
				continue
			}
			if err := a.sendOne(ctx, sess, st, recs[0]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *Agent) sendOne(ctx context.Context, sess Session, st stream, rec outbox.Record) error {
	var refused byte
	if err := a.publish(ctx, sess, st.topic, rec.Payload, false, &refused); err != nil {
		return err
	}
	if refused != 0 {
		if !permanent(refused) {
			return &RefusedError{Topic: st.topic, Reason: refused}
		}
		if err := st.ob.DeadLetter(rec, fmt.Sprintf("puback 0x%02x", refused)); err != nil {
			return err
		}
		a.count(func(s *Stats) { s.DeadLettered++ })
		a.log.Warn("agent: reading refused for good; moved to the dead-letter file", "topic", st.topic, "seq", rec.Seq, "reason", fmt.Sprintf("0x%02x", refused))
	} else {
		a.count(func(s *Stats) {
			s.Messages++
			if st.batch {
				s.Published++
			}
		})
	}
	return st.ob.Ack(rec.Seq)
}

// sendBatch sends the longest run of records from one epoch that decode as
// one batch message; a batch refused for good is resent one reading at a
// time so that only the bad readings are dead-lettered.
func (a *Agent) sendBatch(ctx context.Context, sess Session, st stream, recs []outbox.Record) error {
	m := telemetry.Message{Epoch: recs[0].Epoch, Batch: true, Readings: make([]telemetry.Telemetry, 0, len(recs))}
	for _, r := range recs {
		if r.Epoch != m.Epoch {
			break
		}
		one, err := telemetry.DecodeTelemetry(r.Payload, time.Time{}, telemetry.Limits{})
		if err != nil || len(one.Readings) != 1 || one.Epoch != r.Epoch {
			break
		}
		m.Readings = append(m.Readings, one.Readings[0])
	}
	n := len(m.Readings)
	if n <= 1 {
		return a.sendOne(ctx, sess, st, recs[0])
	}
	var refused byte
	if err := a.publish(ctx, sess, st.topic, m.Marshal(), false, &refused); err != nil {
		return err
	}
	if refused != 0 {
		if !permanent(refused) {
			return &RefusedError{Topic: st.topic, Reason: refused}
		}
		for _, r := range recs[:n] {
			if err := a.sendOne(ctx, sess, st, r); err != nil {
				return err
			}
		}
		return nil
	}
	a.count(func(s *Stats) { s.Messages++; s.Published += uint64(n) })
	return st.ob.Ack(recs[n-1].Seq)
}
