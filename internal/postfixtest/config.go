package postfixtest

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
)

// layout is where one instance keeps its files. Everything Postfix writes
// (queue, pid files, master.lock, caches, the log) lives under root, so
// instances in one test binary share nothing but the Postfix binaries.
type layout struct {
	root      string // 0755, so that the postfix user can enter it
	configDir string // main.cf, master.cf
	queueDir  string // queue_directory, including pid/master.pid
	dataDir   string // data_directory (master.lock, caches), owned by postfix
	maillog   string // maillog_file
}

func newLayout(root string) layout {
	return layout{
		root:      root,
		configDir: root + "/etc",
		queueDir:  root + "/spool",
		dataDir:   root + "/data",
		maillog:   root + "/maillog",
	}
}

// ports are the loopback ports that the instance's smtpd services listen on.
type ports struct {
	smtp     int
	reinject int // 0 unless Options.Reinject
}

// param is one main.cf line; why says why the harness sets it.
type param struct {
	name, value, why string
}

// mainCF renders main.cf. Options.MainCF replaces a default in place or
// adds a parameter at the end.
func mainCF(l layout, hostname string, opts Options) (string, error) {
	relayDomains := opts.RelayDomains
	if len(relayDomains) == 0 {
		relayDomains = []string{"example.org"}
	}
	action := opts.MilterDefaultAction
	if action == "" {
		action = "tempfail"
	}
	transport, err := inlineMap(opts.Transport)
	if err != nil {
		return "", fmt.Errorf("Options.Transport: %w", err)
	}

	ps := []param{
		{"compatibility_level", "3.6", "the defaults of a current Postfix (SMTPUTF8 on, no append_dot_mydomain)"},
		{"config_directory", l.configDir, "every path below is private to this instance"},
		{"queue_directory", l.queueDir, ""},
		{"data_directory", l.dataDir, "holds master.lock: a shared one would let only one instance run"},
		{"maillog_file", l.maillog, "there is no syslog: postlogd writes here (postlog service in master.cf)"},
		{"maillog_file_prefixes", l.root, "postlogd refuses log files outside these prefixes"},
		{"myhostname", hostname, "unique, so that instances relaying to each other are not taken for a mail loop"},
		{"inet_interfaces", "127.0.0.1", "loopback only"},
		{"inet_protocols", "ipv4", ""},
		{"mydestination", "", "no local delivery: everything is relayed or goes to transport_maps"},
		{"relay_domains", strings.Join(relayDomains, ", "), ""},
		{"mynetworks", "127.0.0.0/8", "the test client may relay, like an organisation's own hosts"},
		{"smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination", ""},
		{"alias_maps", "", "no /etc/aliases lookups"},
		{"alias_database", "", ""},
		{"local_recipient_maps", "", ""},
		{"recipient_delimiter", "+", "subaddress tokens: board+TOKEN@example.org"},
		{"smtp_dns_support_level", "disabled", "no DNS: next hops are loopback addresses"},
		{"lmtp_dns_support_level", "disabled", ""},
		{"smtp_host_lookup", "native", "names such as localhost resolve through /etc/hosts, not DNS"},
		{"lmtp_host_lookup", "native", ""},
	}
	if opts.RelayHost != "" {
		ps = append(ps, param{"relayhost", opts.RelayHost, "all non-transport_maps mail, DSNs included, goes to the test's capture server"})
	} else {
		// Without a relay host Postfix would look up MX hosts on the
		// network; the retry transport keeps such mail deferred, with a
		// delay_reason that says why.
		const reason = "retry:4.3.5 postfixtest: Options.RelayHost is not set"
		ps = append(ps,
			param{"default_transport", reason, "no RelayHost: never deliver to the outside world"},
			param{"relay_transport", reason, ""})
	}
	if transport != "" {
		ps = append(ps, param{"transport_maps", transport, "inline: needs no postmap"})
	}
	if opts.Milter != "" {
		ps = append(ps, param{"smtpd_milters", opts.Milter, ""})
	}
	ps = append(ps,
		param{"milter_default_action", action, ""},
		// Nothing is retried behind a test's back: deferred mail waits for
		// Flush, so a test sees each delivery attempt it caused and no other.
		param{"queue_run_delay", "1h", "deferred mail is retried only on Flush (postqueue -f)"},
		param{"minimal_backoff_time", "1h", ""},
		param{"maximal_backoff_time", "2h", ""},
		param{"delay_warning_time", "0", "no \"delayed mail\" DSNs among the ones a test waits for"},
		param{"smtp_connection_cache_on_demand", "no", "one connection per delivery: a test server sees each delivery as its own session, and no idle cached connection outlives it"},
		param{"lmtp_connection_cache_on_demand", "no", ""},
		param{"in_flow_delay", "0", "no throttling of smtpd when tests submit faster than delivery"},
		param{"smtpd_error_sleep_time", "0", "tests that provoke many rejections are not slowed down"},
	)

	for _, name := range slices.Sorted(maps.Keys(opts.MainCF)) {
		value := opts.MainCF[name]
		if strings.ContainsAny(name+value, "\r\n") || name == "" || strings.ContainsAny(name, " \t=") {
			return "", fmt.Errorf("Options.MainCF: bad parameter %q = %q", name, value)
		}
		if i := slices.IndexFunc(ps, func(p param) bool { return p.name == name }); i >= 0 {
			ps[i].value, ps[i].why = value, "Options.MainCF"
			continue
		}
		ps = append(ps, param{name, value, "Options.MainCF"})
	}

	var b strings.Builder
	b.WriteString("# Generated by internal/postfixtest for one test; removed when it ends.\n")
	for _, p := range ps {
		if p.why != "" {
			fmt.Fprintf(&b, "# %s\n", p.why)
		}
		fmt.Fprintf(&b, "%s = %s\n", p.name, p.value)
	}
	return b.String(), nil
}

// inlineMap renders m as an inline: table. Each entry is braced so that a
// value may contain commas or spaces (e.g. "retry:4.3.0 text, more").
func inlineMap(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "", nil
	}
	var entries []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if k == "" || v == "" || strings.ContainsAny(k+v, "{}\r\n") || strings.ContainsAny(k, " \t=") {
			return "", fmt.Errorf("cannot write %q = %q as an inline: map entry", k, v)
		}
		entries = append(entries, "{"+k+"="+v+"}")
	}
	return "inline:{ " + strings.Join(entries, ", ") + " }", nil
}

// masterCF renders master.cf: the distribution's services that mail
// delivery needs, all with chroot n (the instance has no chroot jail, and a
// chrooted smtpd would see clients as unknown[127.0.0.1]), and smtpd only
// on the instance's loopback ports.
func masterCF(p ports) string {
	var b strings.Builder
	b.WriteString(`# Generated by internal/postfixtest for one test; removed when it ends.
# service type  private unpriv  chroot  wakeup  maxproc command + args
`)
	fmt.Fprintf(&b, "%s inet n - n - - smtpd\n", hostPort(p.smtp))
	if p.reinject != 0 {
		// FILTER_README's return path for an after-queue filter: no content
		// filter (no loop), no milters and no checks that already ran on the
		// way in; only loopback clients, which may send anywhere.
		fmt.Fprintf(&b, `%s inet n - n - - smtpd
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters
  -o smtpd_helo_restrictions=
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_relay_restrictions=
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o mynetworks=127.0.0.0/8
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
`, hostPort(p.reinject))
	}
	b.WriteString(`pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
  -o syslog_name=postfix/$service_name
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
`)
	return b.String()
}

func hostPort(port int) string {
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
}
