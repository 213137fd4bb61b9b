// Package testkit groups relay's test-support packages, apart from the
// production code under internal/ (delivery, lifecycle, option, telemetry,
// wm): servers for tests (natstest: embedded NATS servers and clusters;
// redistest: spawned redis-server processes and clusters), the fault cases
// (faulttest), the memory backend's conformance harness (memharness) and the
// fuzz input helper (fuzzkv). Only tests, examples and the benchmark module
// import them.
package testkit
