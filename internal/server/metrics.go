package server

import (
	"strconv"

	"loadwatch/internal/broker"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descClients   = prometheus.NewDesc("loadwatch_mqtt_clients_connected", "MQTT clients connected to the embedded broker.", nil, nil)
	descSleeping  = prometheus.NewDesc("loadwatch_mqtt_sessions_offline", "Persistent MQTT sessions whose client is disconnected (sleeping devices).", nil, nil)
	descInflight  = prometheus.NewDesc("loadwatch_mqtt_inflight_messages", "QoS 1/2 messages held by the embedded broker.", nil, nil)
	descReceived  = prometheus.NewDesc("loadwatch_mqtt_received_messages_total", "MQTT messages received by the embedded broker.", nil, nil)
	descSent      = prometheus.NewDesc("loadwatch_mqtt_sent_messages_total", "MQTT messages sent by the embedded broker.", nil, nil)
	descDropped   = prometheus.NewDesc("loadwatch_mqtt_dropped_messages_total", "Messages the embedded broker dropped (outbound queue or inflight store full); should stay 0.", []string{"cause"}, nil)
	descAuthFail  = prometheus.NewDesc("loadwatch_mqtt_auth_failures_total", "Refused MQTT connections (bad credentials or client id).", nil, nil)
	descACLDenied = prometheus.NewDesc("loadwatch_mqtt_acl_denied_total", "Publishes and subscriptions refused by the device ACL.", nil, nil)
	descRefused   = prometheus.NewDesc("loadwatch_mqtt_refused_messages_total", "Publishes refused with an MQTT 5 reason code, by code.", []string{"code"}, nil)
)

// brokerCollector exports the embedded broker's counters.
type brokerCollector struct{ b *broker.Broker }

func (c brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClients, descSleeping, descInflight, descReceived, descSent, descDropped, descAuthFail, descACLDenied, descRefused} {
		ch <- d
	}
}

func (c brokerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.b.Stats()
	g := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	n := func(d *prometheus.Desc, v int64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	g(descClients, s.ClientsConnected)
	g(descSleeping, s.ClientsDisconnected)
	g(descInflight, s.Inflight)
	n(descReceived, s.MessagesReceived)
	n(descSent, s.MessagesSent)
	n(descDropped, s.MessagesDropped, "queue")
	n(descDropped, s.InflightDropped, "inflight")
	n(descAuthFail, s.AuthFailures)
	n(descACLDenied, s.ACLDenied)
	for code, v := range s.Refused {
		n(descRefused, v, "0x"+strconv.FormatUint(uint64(code)|0x100, 16)[1:])
	}
}
