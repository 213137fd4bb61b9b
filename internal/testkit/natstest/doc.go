// Package natstest starts a real NATS server, embedded in-process with
// JetStream on a file store, for relay's tests and examples.
//
// # In tests
//
// [Start] embeds a fresh server per call, listening on a free 127.0.0.1 port,
// so tests that each call [Start] are isolated and may run in parallel; it is
// shut down, and its temporary store removed, in t.Cleanup. [Connect] returns
// a client that reconnects forever, so it survives [Server.Restart] and
// [Server.Stop] / [Server.Start] outages.
//
// When the environment variable NATS_URL is set, [Start] embeds nothing and
// hands out that URL instead. Such a server cannot be restarted from the test:
// a test that needs to calls [RequireControl] first, which skips it (fails it
// when CI=true, unless RELAY_EXTERNAL_OK=1); [Server.Restart], [Server.Stop]
// and [Server.Start] do the same as a last resort. Tests sharing an external
// server put every topic through [Topic], which gives each test a prefix of
// its own and deletes the test's streams in t.Cleanup; names a test does not
// choose (the conformance suite's) are removed by [RemoveNewStreams]. Limits
// are the server's: read max_payload from the connection (MaxPayload), not
// from a [Config], which NATS_URL ignores; [StartEmbedded] is for the few
// tests of a configuration an external server cannot be assumed to have.
//
// # Clusters
//
// [StartCluster] embeds a JetStream cluster of three or more servers in the
// test process, on free loopback ports, each with its own store and server
// name, and waits for the meta leader. [Cluster.StopNode] and
// [Cluster.StartNode] take one node down and bring it back on its store;
// [Cluster.StreamLeader] says which node leads a stream; [ConnectCluster]
// returns a client of every node. With [WithLinkProxies] every client port
// and every route of the cluster goes through a proxy of
// internal/testkit/netfault, and [Cluster.Cut] partitions one node off from
// its clients and its peers until [Cluster.Heal]. NATS_URL does not apply to
// clusters.
//
// # Outside tests
//
// [Run] starts a server from a [Config] and returns an error instead of
// failing a test; the caller calls [Server.Shutdown].
//
// # Goroutines
//
// [Server.Shutdown] and [Server.Stop] return only after the embedded server
// has finished shutting down, so tests using go.uber.org/goleak see no server
// goroutine left behind once cleanup has run.
package natstest
