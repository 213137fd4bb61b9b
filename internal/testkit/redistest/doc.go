// Package redistest starts a real Redis server for relay's tests and examples.
//
// # Where the server comes from
//
// [Start] takes, in order of preference:
//
//  1. the server at REDIS_URL (parsed with redis.ParseURL), when it is set;
//  2. redis-server from PATH, started as a child process on a free 127.0.0.1
//     port in a temporary directory;
//  3. image redis:7 started with github.com/ory/dockertest/v3, when a Docker
//     engine answers;
//  4. none: the test is skipped with a message saying how to provide Redis,
//     except when CI=true, where it fails: a missing server must fail CI.
//
// [Run] starts only the child process and returns an error instead of failing
// a test; it is what programs outside tests use.
//
// A package's TestMain wraps its m with [Main], which makes a missing server
// impossible to miss outside CI=true: without redis-server on PATH it leaves
// the examples out (they use [Run] and cannot skip), and when tests skipped or
// examples were left out it prints one line saying what is missing and fails
// the package, unless RELAY_SKIP_REDIS=1 ([SkipEnv]).
//
// # Isolation
//
// Each [Start] call with redis-server or Docker gets its own server, so tests
// may run in parallel. With REDIS_URL every test shares one server, so each
// [Start] call also gets a unique [Server.KeyPrefix]: tests put it in front of
// every topic or key they use, and keys containing it are deleted in
// t.Cleanup. Tests that always use the prefix run unchanged in every mode.
//
// # Restarts and crashes
//
// [Server.Restart], [Server.Stop], [Server.Kill] and [Server.Start] control
// the child process, and [Server.Pause] and [Server.Resume] hang it and let
// it go on (SIGSTOP, SIGCONT); data survives a restart or a kill only with
// [Config.AppendOnly]. A server from REDIS_URL or Docker cannot be controlled
// this way: a test that needs to calls [RequireControl] first, before
// anything waits on the server, which skips it (fails it under CI=true,
// unless RELAY_EXTERNAL_OK=1); the methods do the same as a last resort,
// which is right only on the goroutine of the test that called [Start].
//
// # REDIS_URL
//
// REDIS_URL is parsed with redis.ParseURL, so its database number, user
// name and password are honoured by [Client] and by [Options], for clients
// that dial another address (a proxy). Keys without the test's prefix, such
// as the conformance suite's topics, are removed by [RemoveNewKeys].
//
// # Clusters
//
// [StartCluster] runs a Redis Cluster of six redis-server processes (three
// masters, one replica each) made with redis-cli --cluster create, and waits
// until every node says cluster_state:ok and every master has a replica
// whose link is up. [Cluster.KillMaster] SIGKILLs the master of a key's slot
// and waits for its replica to take over, [Cluster.StartNode] brings the
// node back (as a replica), [Cluster.MoveSlot] reshards a key's slot to
// another master, and [Cluster.Client] is a redis.ClusterClient of all
// nodes. REDIS_URL does not apply to clusters; without redis-server and
// redis-cli on PATH StartCluster skips, or fails under CI=true.
//
// # Ownership
//
// The child process is killed by [Server.Shutdown], which [Start] registers
// with t.Cleanup; on Linux it is also killed if the test process dies
// (Pdeathsig). Clients from [Client] are closed in t.Cleanup.
package redistest
