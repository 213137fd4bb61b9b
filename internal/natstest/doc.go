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
// [Server.Restart], [Server.Stop] and [Server.Start] then skip the test, or
// fail it when CI=true. Tests sharing an external server must pick stream and
// subject names that do not collide.
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
