package agent

import (
	"context"
	"errors"
	"time"

	"loadwatch/internal/telemetry"
)

// LinkReporter is the optional ability of a Sensor to report the serial
// link counters it keeps per meter address (the PZEM driver's CRC errors,
// timeouts and so on). When the Sensor has it, the agent puts the counters
// in its retained status message: at every connection and once per
// heartbeat period, so the latest counters are always on the broker.
//
// LinkStats must be safe to call from the sampling loop between reads; the
// agent never calls it from anywhere else.
type LinkReporter interface {
	LinkStats() map[uint8]telemetry.LinkCounters
}

// linkTick runs on the sampling loop after a read (reported: the read
// made a report that was just appended). It takes a snapshot of the link
// counters for the network side when a report may open a connection, and
// once per heartbeat period (Heartbeat wakes x Wake; the first read
// included) it also asks the network side to publish the status again,
// also when reads fail, so a broken link shows while it is broken.
func (a *Agent) linkTick(d *device, now time.Time, reported bool) {
	lr, ok := a.cfg.Sensor.(LinkReporter)
	if !ok {
		return
	}
	c := d.duty.Config()
	due := a.linkLast.IsZero() || now.Sub(a.linkLast) >= time.Duration(c.Heartbeat)*c.Wake
	if !due && !reported {
		return
	}
	m := lr.LinkStats()
	a.link.Store(&m)
	if due {
		a.linkLast = now
		a.statusDue.Store(true)
		a.wake()
	}
}

// statusIDs are the ids a status is published for: every device, then the
// agent's own id (once, when it is not also a device).
func (a *Agent) statusIDs() []string {
	ids := make([]string, 0, len(a.devs)+1)
	seen := map[string]bool{}
	for _, id := range append(a.Devices(), a.cfg.ID) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// linkFor returns the latest link counters for the status of id: a
// device's own meter address, or every meter of the agent for the agent's
// id; nil when there are none (the member is then left out).
func (a *Agent) linkFor(id string) map[uint8]telemetry.LinkCounters {
	p := a.link.Load()
	if p == nil || len(*p) == 0 {
		return nil
	}
	all := *p
	out := map[uint8]telemetry.LinkCounters{}
	if d := a.byID[id]; d != nil && id != a.cfg.ID {
		if c, ok := all[d.addr]; ok {
			out[d.addr] = c
		}
	} else {
		for _, d := range a.devs {
			if c, ok := all[d.addr]; ok {
				out[d.addr] = c
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// statusPayload is the status message for id with the latest counters
// and, when online, the relay's state (an offline status leaves it out,
// like the last will: the agent no longer drives the relay).
func (a *Agent) statusPayload(state telemetry.StatusState, id string) []byte {
	s := telemetry.Status{State: state, Firmware: a.cfg.Firmware, Time: a.cfg.Now(), Link: a.linkFor(id)}
	if state == telemetry.StatusOnline {
		s.Relay = a.relayFor(id)
	}
	return s.AppendJSON(nil)
}

// refreshStatus publishes status online again (retained) for every id when
// the sampling loop asked for it (link counters due, relay state changed);
// on failure the request stays.
func (a *Agent) refreshStatus(ctx context.Context, sess Session) error {
	if !a.statusDue.CompareAndSwap(true, false) {
		return nil
	}
	for _, id := range a.statusIDs() {
		err := a.publish(ctx, sess, telemetry.Topic(id, telemetry.ChannelStatus), a.statusPayload(telemetry.StatusOnline, id), true, nil)
		var re *RefusedError
		if errors.As(err, &re) {
			a.log.Warn("agent: status refused", "err", err)
			continue
		}
		if err != nil {
			a.statusDue.Store(true)
			return err
		}
	}
	return nil
}
