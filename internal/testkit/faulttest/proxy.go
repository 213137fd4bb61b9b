package faulttest

import "github.com/go-relay/relay/internal/testkit/netfault"

// Proxy is [netfault.Proxy]: a loopback TCP proxy that cuts, refuses,
// delays or black-holes the connections through it.
type Proxy = netfault.Proxy

// NewProxy is [netfault.NewProxy]: it listens on a free 127.0.0.1 port and
// forwards connections to upstream ("host:port"). The caller must call
// [Proxy.Close].
func NewProxy(upstream string) (*Proxy, error) { return netfault.NewProxy(upstream) }
