package media

import (
	"fmt"
	"net/netip"
	"strings"
)

// A blocked range of addresses and what to call it in a message.
type blockedRange struct {
	prefix netip.Prefix
	what   string
}

// blocked are the ranges never fetched unless allow-listed: everything that
// is not a globally routed unicast address, after IPv4-mapped IPv6 addresses
// (::ffff:a.b.c.d) are unmapped. Sources: the IANA IPv4 and IPv6
// special-purpose address registries (RFC 6890 and its updates).
var blocked = func() []blockedRange {
	var r []blockedRange
	add := func(what string, prefixes ...string) {
		for _, p := range prefixes {
			r = append(r, blockedRange{netip.MustParsePrefix(p), what})
		}
	}
	add("an unspecified or 'this network' address", "0.0.0.0/8", "::/128")
	add("a loopback address", "127.0.0.0/8", "::1/128")
	add("a private address (RFC 1918)", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
	add("a shared (carrier-grade NAT) address", "100.64.0.0/10")
	add("a link-local address (where cloud metadata endpoints live)", "169.254.0.0/16", "fe80::/10")
	add("an IETF protocol address", "192.0.0.0/24")
	add("a documentation address", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
	add("a benchmarking address", "198.18.0.0/15", "2001:2::/48")
	add("a 6to4 relay anycast address", "192.88.99.0/24")
	add("a multicast address", "224.0.0.0/4", "ff00::/8")
	add("a reserved or broadcast address", "240.0.0.0/4")
	add("a unique local address (fc00::/7)", "fc00::/7")
	add("a site-local address", "fec0::/10")
	add("an IPv4-compatible IPv6 address", "::/96")
	add("a discard-only address", "100::/64")
	add("a local-use NAT64 address", "64:ff9b:1::/48")
	add("a Teredo address", "2001::/32")
	add("an ORCHID address", "2001:10::/28", "2001:20::/28")
	return r
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// classify says why addr must not be fetched, or "" when it is a global
// unicast address. IPv4-mapped addresses are unmapped first, and the IPv4
// address inside a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address is
// checked too, since such a gateway would forward to it.
func classify(addr netip.Addr) string {
	if !addr.IsValid() {
		return "an invalid address"
	}
	addr = addr.WithZone("").Unmap()
	for _, b := range blocked {
		if b.prefix.Contains(addr) {
			return b.what
		}
	}
	if addr.Is6() {
		a := addr.As16()
		var v4 netip.Addr
		var via string
		switch {
		case nat64.Contains(addr):
			v4, via = netip.AddrFrom4([4]byte{a[12], a[13], a[14], a[15]}), "NAT64"
		case sixToFour.Contains(addr):
			v4, via = netip.AddrFrom4([4]byte{a[2], a[3], a[4], a[5]}), "6to4"
		}
		if v4.IsValid() {
			if why := classify(v4); why != "" {
				return fmt.Sprintf("the %s form of %s, %s", via, v4, why)
			}
		}
	}
	return ""
}

// allowList is the parsed AllowHosts and AllowNets.
type allowList struct {
	hosts map[string]bool
	nets  []netip.Prefix
}

func newAllowList(hosts []string, nets []netip.Prefix) allowList {
	a := allowList{hosts: map[string]bool{}}
	for _, h := range hosts {
		a.hosts[normHost(h)] = true
	}
	for _, n := range nets {
		a.nets = append(a.nets, n.Masked())
	}
	return a
}

func normHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

func (a allowList) host(h string) bool { return a.hosts[normHost(h)] }

func (a allowList) addr(addr netip.Addr) bool {
	addr = addr.WithZone("")
	for _, n := range a.nets {
		if n.Contains(addr) || n.Contains(addr.Unmap()) {
			return true
		}
	}
	return false
}

// ParseAllowList splits a list of allowed hosts and networks, as a flag or a
// config file gives them, into Options.AllowHosts and Options.AllowNets:
// "10.0.0.0/8" and "fd00::/8" are networks, "192.168.1.5" and "::1" are
// single addresses (a /32 or /128), anything else is a host name.
func ParseAllowList(items []string) (hosts []string, nets []netip.Prefix, err error) {
	for _, it := range items {
		it = strings.TrimSpace(it)
		switch {
		case it == "":
			continue
		case strings.Contains(it, "/"):
			p, err := netip.ParsePrefix(it)
			if err != nil {
				return nil, nil, fmt.Errorf("allow-list entry %q: %v", it, err)
			}
			nets = append(nets, p.Masked())
		default:
			if a, err := netip.ParseAddr(strings.Trim(it, "[]")); err == nil {
				nets = append(nets, netip.PrefixFrom(a.WithZone(""), a.BitLen()))
				continue
			}
			if strings.ContainsAny(it, " :@?#") {
				return nil, nil, fmt.Errorf("allow-list entry %q is neither a host name, an address nor a network", it)
			}
			hosts = append(hosts, normHost(it))
		}
	}
	return hosts, nets, nil
}
