// Package webtest holds the dashboard's end-to-end tests: a real server
// (registry, embedded broker, ingest, store, query API, dashboard) with
// simulated devices publishing over MQTT, driven by Debian's chromium
// through chromedp, golden tests of the API answers the pages read, and a
// check that every Grafana panel query parses and returns data.
//
// It has no code outside its tests.
package webtest
