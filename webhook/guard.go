package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrForbiddenAddress is an endpoint whose host is, or resolves to, an
// address a delivery may not reach: loopback (unless
// Config.AllowLoopback), private, shared (carrier-grade NAT, where one
// cloud keeps its metadata service), link-local (169.254.169.254, the
// metadata service of most clouds), multicast, broadcast or unspecified.
var ErrForbiddenAddress = errors.New("webhook: the endpoint's address is not a public one")

// MaxURLLength bounds an endpoint's URL.
const MaxURLLength = 2048

// forbidden are the networks a delivery never reaches, besides what
// netip's predicates name.
var forbidden = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (Alibaba's metadata is 100.100.100.200)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: checked as the IPv4 inside too
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local NAT64
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2002::/16"),       // 6to4: relays reach the IPv4 inside
	netip.MustParsePrefix("2001::/32"),       // Teredo
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated
}

// Allowed reports whether a delivery may reach ip under c.
func (c *Config) Allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is4In6() || !ip.IsValid() {
		return false
	}
	if ip.IsLoopback() {
		return c.AllowLoopback
	}
	if ip.IsUnspecified() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() {
		return false
	}
	for _, p := range forbidden {
		if p.Contains(ip) {
			return false
		}
	}
	if ip.Is6() && ip.As16()[0] == 0 && ip.As16()[1] == 0 { // ::/16 holds the IPv4-compatible addresses
		return false
	}
	return true
}

// CheckURL checks an endpoint's URL where it is registered: absolute,
// https (http only if c allows it), no user or password, at most
// MaxURLLength bytes, and a host that is not, and does not resolve to,
// a forbidden address. A name that does not resolve yet is accepted:
// every delivery checks the addresses it dials anyway, so that a name
// that later resolves elsewhere (DNS rebinding) is refused then.
func (c *Config) CheckURL(ctx context.Context, raw string) (string, error) {
	if len(raw) > MaxURLLength {
		return "", fmt.Errorf("url must be at most %d bytes", MaxURLLength)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "":
		return "", errors.New("url must be an absolute https URL")
	case u.Scheme != "https" && !(u.Scheme == "http" && (c.AllowHTTP || c.AllowLoopback)):
		return "", errors.New("url must use https")
	case u.User != nil:
		return "", errors.New("url must not carry a user or password")
	case u.Fragment != "" || strings.ContainsAny(raw, " \t\r\n"):
		return "", errors.New("url must not carry a fragment or white space")
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if !c.Allowed(ip) {
			return "", ErrForbiddenAddress
		}
		return u.String(), nil
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if (h == "localhost" || strings.HasSuffix(h, ".localhost")) && !c.AllowLoopback || h == "" || numeric(h) {
		return "", ErrForbiddenAddress
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips, err := c.resolver().LookupNetIP(ctx, "ip", h)
	if err != nil {
		return u.String(), nil
	}
	for _, ip := range ips {
		if !c.Allowed(ip) {
			return "", ErrForbiddenAddress
		}
	}
	return u.String(), nil
}

func (c *Config) resolver() Resolver {
	if c.Resolver == nil {
		return net.DefaultResolver
	}
	return c.Resolver
}

// Client returns the HTTP client deliveries are sent with: it dials only
// addresses c allows (resolving names itself, and checking the address
// again where it is dialled), follows no redirect, uses no proxy from the
// environment (a proxy would dial for it, unchecked), and gives up after
// c.Timeout.
func (c *Config) Client() *http.Client {
	d := &net.Dialer{
		Timeout: c.Timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !c.Allowed(ap.Addr()) {
				return ErrForbiddenAddress
			}
			return nil
		},
	}
	t := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			var ips []netip.Addr
			if ip, err := netip.ParseAddr(host); err == nil {
				ips = []netip.Addr{ip}
			} else if ips, err = c.resolver().LookupNetIP(ctx, "ip", host); err != nil {
				return nil, err
			}
			var last error = ErrForbiddenAddress
			for _, ip := range ips {
				if !c.Allowed(ip) {
					continue
				}
				conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
				if err == nil {
					return conn, nil
				}
				last = err
			}
			return nil, last
		},
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    max(4, c.Concurrency), // several endpoints may share a host
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    c.Timeout,
		ResponseHeaderTimeout:  c.Timeout,
		MaxResponseHeaderBytes: 16 << 10,
	}
	return &http.Client{
		Transport:     t,
		Timeout:       c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// numeric reports whether a host that is no IP address is made like one
// ("2130706433", "127.1", "0x7f.1"): some resolvers read those as
// addresses, and no top-level domain is numeric, so no real name is.
func numeric(h string) bool {
	last := h[strings.LastIndexByte(h, '.')+1:]
	if last == "" {
		return true
	}
	if strings.HasPrefix(last, "0x") {
		return true
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}
