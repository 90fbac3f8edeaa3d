// Package agentmqtt adapts the MQTT client (internal/mqttc) to the Dialer
// and Session interfaces the agent declares (internal/agent), so the agent
// binary, the demo and the tests connect agents the same way.
package agentmqtt

import (
	"context"

	"loadwatch/internal/agent"
	"loadwatch/internal/mqttc"
)

// Dialer connects an agent with mqttc. Base holds the broker URL and the
// device's credentials; each Dial adds the agent's subscriptions, last
// will and message handler to a copy of it.
type Dialer struct {
	Base mqttc.Config
}

// Dial opens one MQTT v5 connection for the agent.
func (d Dialer) Dial(ctx context.Context, o agent.DialOptions) (agent.Session, error) {
	cfg := d.Base
	cfg.Subscribe = o.Subscribe
	if o.WillTopic != "" {
		cfg.Will = &mqttc.Message{Topic: o.WillTopic, Payload: o.WillPayload, QoS: 1, Retain: true}
	}
	if o.OnMessage != nil {
		cfg.OnMessage = func(m mqttc.Message) { o.OnMessage(m.Topic, m.Payload) }
	}
	c, err := mqttc.Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return session{c}, nil
}

type session struct{ c *mqttc.Conn }

// Publish sends at QoS 1 and returns the PUBACK's reason code.
func (s session) Publish(ctx context.Context, topic string, payload []byte, retain bool) (byte, error) {
	return s.c.Publish(ctx, mqttc.Message{Topic: topic, Payload: payload, QoS: 1, Retain: retain})
}

func (s session) Close(ctx context.Context) error { return s.c.Close(ctx) }
func (s session) Done() <-chan struct{}           { return s.c.Done() }
