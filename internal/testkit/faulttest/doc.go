// Package faulttest is relay's fault-injection suite: the fault matrix of
// every backend, written once and run by each backend package's
// faults_test.go against real servers (internal/testkit/natstest,
// internal/testkit/redistest) or, where the fault applies, the memory backend.
//
// # Cases
//
// Each Run function is one named test case; its doc states its budget
// (messages, outage lengths, time bounds). Every case stops by itself and
// sends traffic on loopback only.
//
//   - [RunHandlerFailures]: 10% of the messages fail transiently, 1% always
//     (poison); transient ones must be handled, poison ones dead-lettered
//     exactly once.
//   - [RunConsumerCrash]: a consumer in a child process ([HelperProcess]) is
//     killed with SIGKILL while holding unacked messages; another member of
//     the group must get them after the ack wait or claim timeout.
//   - [RunBrokerRestart]: the server goes down and comes back while
//     messages are published and consumed; every Publish that returned nil
//     must be consumed.
//   - [RunNetworkCut], [RunNetworkLatency], [RunNetworkBlackHole]: faults
//     between the clients and the server, injected by a [Proxy]; consumption
//     must resume by itself, with no hot loop during the outage.
//   - [RunGracefulShutdown]: Close while 1,000 messages are in flight, then
//     a new broker of the group; every message is handled once by the first
//     broker (and acked) or by the second, with no goroutine left behind.
//
// On a cluster ([ClusterBackend]: a 3-node JetStream cluster with R3 streams,
// a Redis Cluster), the node taking the topic's writes is lost
// ([Failover]) during publish ([RunFailoverDuringPublish]), consume
// ([RunFailoverDuringConsume]), dead-letter writes
// ([RunFailoverDuringDeadLetter], and [RunFailoverOfDeadLetterTopic] for the
// dead-letter topic's node), the claim or redelivery of a dead consumer's
// messages ([RunFailoverDuringClaim]) and Close ([RunCloseDuringFailover]);
// [RunClusterNetworkCut] black-holes one node's client links behind a
// [Proxy]; [RunClusterPartitionOfLeader] and [RunClusterPartitionOfFollower]
// cut one node off from its clients and its peers ([Partition]) for longer
// than the election timeout, then heal the cut.
//
// # Modes
//
// By default the cases use small counts and short outages, so that the
// backends' `go test -race` stays quick; RELAY_FAULTS=full runs the full
// counts (20,000 messages with handler failures, three restarts, longer
// outages). RELAY_FAULTS_LOG=warn (or info, debug) shows the brokers' logs.
//
// # Report
//
// Every case logs one line
//
//	RELIABILITY fault=F backend=B mode=M messages=N lost=L duplicates=D recovery=R key=value...
//
// from which RELIABILITY.md's table is made (see there). messages counts the
// messages whose Publish returned nil; lost those of them never handled nor
// dead-lettered; duplicates the handlings and dead letters of a message
// beyond its first. recovery is defined per case in its doc; "-" where it
// does not apply.
//
// # Proxy
//
// [Proxy] is [netfault.Proxy], a small TCP proxy of this module (the package
// doc of internal/testkit/netfault says why not Toxiproxy).
package faulttest
