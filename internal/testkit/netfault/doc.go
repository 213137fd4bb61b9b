// Package netfault is the TCP proxy relay's tests put between a client and
// a server, or between two servers of a cluster, to inject network faults:
// a cut (every connection reset), refused connections, latency, and a black
// hole (every byte swallowed, nothing closed).
//
// It is a package of its own, depending on nothing of relay, so that both
// the fault cases (internal/testkit/faulttest) and the test servers
// (internal/testkit/natstest, whose clusters can route their nodes' links
// through proxies) use it.
//
// [Proxy] is a small proxy of this module, not Toxiproxy: the only Toxiproxy
// the module proxy serves (v2.5.0, 2022) needs its HTTP API server,
// Prometheus and zerolog to build a proxy, which would have put a dozen
// modules into relay's go.mod for three faults.
package netfault
