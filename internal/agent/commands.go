package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"loadwatch/internal/telemetry"
)

// inbound takes a message from the broker (on the MQTT client's goroutine)
// and hands commands to the sampling loop without blocking.
func (a *Agent) inbound(topic string, payload []byte) {
	dev, ch, err := telemetry.ParseTopic(topic)
	if err != nil || ch != telemetry.ChannelCmd || !telemetry.Owns(a.cfg.ID, dev) {
		a.log.Warn("agent: message on an unexpected topic ignored", "topic", topic)
		return
	}
	cmd, err := telemetry.DecodeCommand(payload, telemetry.Limits{})
	a.count(func(s *Stats) { s.Commands++ })
	if err != nil {
		a.log.Warn("agent: bad command refused", "topic", topic, "err", err)
		if cmd.ID != "" { // the id was readable: say why
			a.queueAck(dev, telemetry.CommandAck{ID: cmd.ID, Error: err.Error()})
		}
		return
	}
	d := a.byID[dev]
	if d == nil && dev != a.cfg.ID {
		a.queueAck(dev, telemetry.CommandAck{ID: cmd.ID, Error: "unknown device " + dev})
		return
	}
	select {
	case a.cmds <- command{dev: d, cmd: cmd}:
	default:
		a.queueAck(dev, telemetry.CommandAck{ID: cmd.ID, Error: "busy: too many commands queued"})
	}
	a.wake() // keep a lingering connection for the ack
}

func (a *Agent) queueAck(dev string, k telemetry.CommandAck) {
	if len(k.Error) > telemetry.MaxDetailLen {
		k.Error = k.Error[:telemetry.MaxDetailLen]
	}
	select {
	case a.acks <- ack{topic: telemetry.Topic(dev, telemetry.ChannelCmdAck), payload: k.AppendJSON(nil)}:
	default:
		a.log.Warn("agent: command ack dropped (queue full)", "id", k.ID)
	}
	a.wake()
}

// execute runs a command on the sampling loop (which owns the state
// machines) and queues its ack. A command on the agent's own topic when it
// has several meters applies to all of them, except the per-meter ones.
func (a *Agent) execute(ctx context.Context, c command) {
	topicDev := a.cfg.ID
	targets := a.devs
	if c.dev != nil {
		topicDev, targets = c.dev.id, []*device{c.dev}
	}
	k := telemetry.CommandAck{ID: c.cmd.ID}
	if c.cmd.Kind == telemetry.CmdCheckOTA {
		if a.cfg.OTA == nil {
			k.Error = "no OTA updater configured"
			a.queueAck(topicDev, k)
			return
		}
		go func() { // an update check may take long: never on the sampling loop
			res, err := a.cfg.OTA.CheckNow(ctx)
			k.OK, k.State = err == nil, res
			if err != nil {
				k.Error = err.Error()
			}
			a.queueAck(topicDev, k)
		}()
		return
	}
	var errs []error
	for _, d := range targets {
		if err := a.apply(ctx, d, c.cmd, len(targets) > 1); err != nil {
			errs = append(errs, err)
		}
		if d.relay != nil {
			k.State = d.safety.State().String()
		}
	}
	if err := errors.Join(errs...); err != nil {
		k.Error = err.Error()
	} else {
		k.OK = true
	}
	a.queueAck(topicDev, k)
}

var errNotAgentWide = errors.New("this command addresses one meter: send it to <id>.<addr>")

func (a *Agent) apply(ctx context.Context, d *device, c telemetry.Command, wide bool) error {
	now := a.cfg.Now()
	switch c.Kind {
	case telemetry.CmdRelayOn, telemetry.CmdRelayOff, telemetry.CmdRelayReset:
		if wide {
			return errNotAgentWide
		}
		if d.relay == nil {
			return errors.New("no relay on this meter")
		}
		switch c.Kind {
		case telemetry.CmdRelayOff:
			a.applySafety(ctx, d, d.safety.Open(now), false)
		case telemetry.CmdRelayOn:
			dec, err := d.safety.Close(now)
			if err != nil {
				return err
			}
			a.applySafety(ctx, d, dec, false)
		default:
			dec, err := d.safety.Reset(now)
			if err != nil {
				return err
			}
			a.applySafety(ctx, d, dec, false)
		}
		return nil
	case telemetry.CmdResetEnergy:
		if wide {
			return errNotAgentWide
		}
		r, ok := a.cfg.Sensor.(EnergyResetter)
		if !ok {
			return errors.New("the meter cannot reset its energy counter")
		}
		d.led.MarkReset() // the next lower counter is a reset, not a wrap
		if err := r.ResetEnergy(ctx, d.addr); err != nil {
			return fmt.Errorf("reset energy: %w", err)
		}
		a.saveLedger(d)
		return nil
	case telemetry.CmdSetAlarm:
		if wide {
			return errNotAgentWide
		}
		var args telemetry.SetAlarmArgs
		if err := telemetry.DecodeArgs(&c, &args); err != nil {
			return err
		}
		s, ok := a.cfg.Sensor.(AlarmSetter)
		if !ok {
			return errors.New("the meter has no alarm threshold")
		}
		if args.Watts < 0 || args.Watts > 25000 {
			return fmt.Errorf("alarm threshold %v out of range 0..25000 W", args.Watts)
		}
		return s.SetAlarmThreshold(ctx, d.addr, args.Watts)
	case telemetry.CmdSetIntervals:
		var args telemetry.SetIntervalsArgs
		if err := telemetry.DecodeArgs(&c, &args); err != nil {
			return err
		}
		cfg := d.duty.Config()
		if args.Wake != nil {
			w := time.Duration(*args.Wake)
			if w < 100*time.Millisecond || w > 24*time.Hour {
				return fmt.Errorf("wake %v out of range 100ms..24h", w)
			}
			cfg.Wake = w
		}
		if args.Heartbeat != nil {
			if *args.Heartbeat < 1 || *args.Heartbeat > 100000 {
				return fmt.Errorf("heartbeat %d out of range 1..100000", *args.Heartbeat)
			}
			cfg.Heartbeat = *args.Heartbeat
		}
		d.duty.SetConfig(cfg)
		return nil
	case telemetry.CmdSetThresholds:
		var args telemetry.SetThresholdsArgs
		if err := telemetry.DecodeArgs(&c, &args); err != nil {
			return err
		}
		return setThresholds(d, args)
	}
	return fmt.Errorf("unknown command kind %q", c.Kind)
}

func setThresholds(d *device, args telemetry.SetThresholdsArgs) error {
	dc := d.duty.Config()
	sc := d.safety.Config()
	neg := func(name string, v float64) error {
		if v < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
		return nil
	}
	if args.ChangeW != nil {
		if err := neg("change_w", float64(*args.ChangeW)); err != nil {
			return err
		}
		dc.ChangeW = *args.ChangeW
	}
	if args.ChangePct != nil {
		dc.ChangePct = *args.ChangePct
		if dc.ChangePct == 0 {
			dc.ChangePct = -1 // 0 in the command means "no relative part"
		}
	}
	if args.MaxPower != nil {
		if err := neg("max_power_w", float64(*args.MaxPower)); err != nil {
			return err
		}
		sc.MaxPower = *args.MaxPower
	}
	if args.MaxCurrent != nil {
		if err := neg("max_current_a", float64(*args.MaxCurrent)); err != nil {
			return err
		}
		sc.MaxCurrent = *args.MaxCurrent
	}
	if args.MaxVoltage != nil {
		if err := neg("max_voltage_v", float64(*args.MaxVoltage)); err != nil {
			return err
		}
		sc.MaxVoltage = *args.MaxVoltage
	}
	if args.MinVoltage != nil {
		if err := neg("min_voltage_v", float64(*args.MinVoltage)); err != nil {
			return err
		}
		sc.MinVoltage = *args.MinVoltage
	}
	if args.Hold != nil {
		if *args.Hold < 0 {
			return errors.New("hold must not be negative")
		}
		sc.Hold = time.Duration(*args.Hold)
	}
	d.duty.SetConfig(dc)
	d.safety.SetConfig(sc)
	return nil
}
