// Package config reads restrictedmail's TOML configuration strictly: an
// unknown key, a value of the wrong type or an impossible value is a
// Problem that names the key and its line, and every problem of a file is
// reported in one pass. A loaded Config is immutable; reloading builds a
// new one.
package config

import (
	"crypto"
	"os"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
)

// DefaultPath is where the daemon and the commands look without --config.
const DefaultPath = "/etc/restrictedmail/restrictedmail.toml"

// Config is the whole configuration. Fields tagged toml:"-" are derived
// while loading (parsed addresses, keys and passwords read from files).
type Config struct {
	Hostname           string  `toml:"hostname"`
	RecipientDelimiter string  `toml:"recipient_delimiter"`
	Log                Log     `toml:"log"`
	Store              Store   `toml:"store"`
	Milter             Milter  `toml:"milter"`
	LMTP               LMTP    `toml:"lmtp"`
	Relay              Relay   `toml:"relay"`
	Tokens             Tokens  `toml:"tokens"`
	HTTP               HTTP    `toml:"http"`
	Postfix            Postfix `toml:"postfix"`
	API                API     `toml:"api"`
	Reports            Reports `toml:"reports"`
	Web                Web     `toml:"web"`
	DKIM               []DKIM  `toml:"dkim"`
	Lists              []List  `toml:"lists"`
	// Webhooks receive signed events of deliveries and tokens (api.go).
	Webhooks []Webhook `toml:"webhooks"`

	// File is the path the configuration was read from ("" for defaults).
	File   string           `toml:"-"`
	byAddr map[string]*List // address.Key → list
	keys   map[string]*DKIM // domain → key
}

// Log configures log/slog output on stderr.
type Log struct {
	Level  string `toml:"level" reload:"restart"`  // debug | info | warn | error
	Format string `toml:"format" reload:"restart"` // text | json
}

// Store configures the state: the embedded SQLite database (path) or, for
// several MX hosts, a PostgreSQL database (url); exactly one of them.
type Store struct {
	Path string `toml:"path" reload:"restart"`

	URL              string   `toml:"url" reload:"restart"`
	PasswordFile     string   `toml:"password_file" reload:"restart"`
	MaxOpenConns     int      `toml:"max_open_conns" reload:"restart"`
	ConnectTimeout   Duration `toml:"connect_timeout" reload:"restart"`
	StatementTimeout Duration `toml:"statement_timeout" reload:"restart"`
}

// DefaultStorePath is store.path unless the file sets it or store.url.
const DefaultStorePath = "/var/lib/restrictedmail/state.db"

// defaultSpoolDir is lmtp.spool_dir with PostgreSQL, which has no
// directory to put it beside.
const defaultSpoolDir = "/var/lib/restrictedmail/spool"

// Milter configures the SMTP-time listener for Postfix's smtpd_milters.
type Milter struct {
	Listen          string   `toml:"listen" reload:"restart"` // "" disables the milter
	SocketMode      FileMode `toml:"socket_mode" reload:"restart"`
	SocketGroup     string   `toml:"socket_group" reload:"restart"`
	AllowedNetworks []string `toml:"allowed_networks"`
	ReadTimeout     Duration `toml:"read_timeout" reload:"restart"`
	WriteTimeout    Duration `toml:"write_timeout" reload:"restart"`

	Addr     Listen        `toml:"-" reload:"restart,with=listen"`
	Networks []NetworkSpec `toml:"-"`
}

// LMTP configures the after-queue listener for Postfix's transport_maps.
type LMTP struct {
	Listen          string   `toml:"listen" reload:"restart"` // "" disables the LMTP endpoint
	SocketMode      FileMode `toml:"socket_mode" reload:"restart"`
	SocketGroup     string   `toml:"socket_group" reload:"restart"`
	AllowedNetworks []string `toml:"allowed_networks"`
	MaxMessageSize  int64    `toml:"max_message_size" reload:"restart"`
	MaxRecipients   int      `toml:"max_recipients" reload:"restart"`
	ReadTimeout     Duration `toml:"read_timeout" reload:"restart"`
	WriteTimeout    Duration `toml:"write_timeout" reload:"restart"`
	GiveUpAfter     Duration `toml:"give_up_after"`
	// Lease is how long a delivery being fanned out stays this process's
	// when several hosts share the store: renewed every third of it while
	// sending; another host takes the delivery over once it has expired.
	Lease           Duration `toml:"lease"`
	SpoolDir        string   `toml:"spool_dir" reload:"restart"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// Transport is the transport_maps value that routes the lists to this
	// endpoint; "" derives it from listen ("lmtp:[127.0.0.1]:8024",
	// "lmtp:unix:/path"). The milter refuses at RCPT any recipient Postfix
	// routes there that is no list; check-postfix checks transport_maps.
	Transport string `toml:"transport"`

	Addr     Listen        `toml:"-" reload:"restart,with=listen"`
	Networks []NetworkSpec `toml:"-"`
}

// Postfix says where Postfix's configuration is, for check-postfix and the
// same check at start.
type Postfix struct {
	// ConfigDirectory is Postfix's configuration directory (postconf -c);
	// "" is Postfix's own default (/etc/postfix).
	ConfigDirectory string `toml:"config_directory"`
	// CheckAtStart: serve runs check-postfix's checks at start and logs
	// each problem as a warning (it starts all the same).
	CheckAtStart bool `toml:"check_at_start"`
}

// Relay configures the SMTP client that sends the redistributed copies.
type Relay struct {
	Address        string   `toml:"address"` // host:port
	TLS            string   `toml:"tls"`     // none | starttls | tls
	CAFile         string   `toml:"ca_file"`
	Username       string   `toml:"username"`
	PasswordFile   string   `toml:"password_file"`
	HeloName       string   `toml:"helo_name"`
	MaxRecipients  int      `toml:"max_recipients"`
	Connections    int      `toml:"connections"`
	ConnectTimeout Duration `toml:"connect_timeout"`
	CommandTimeout Duration `toml:"command_timeout"`

	Password string `toml:"-"` // read from PasswordFile
}

// Tokens configures the token carriers and the defaults of `token issue`.
type Tokens struct {
	Prefix      string   `toml:"prefix"`
	Header      string   `toml:"header"`
	DefaultTTL  Duration `toml:"default_ttl"`
	DefaultUses int      `toml:"default_uses"`
	// MaxRecipients bounds the recipients one token may name (`token
	// issue --recipient`, the API's recipients).
	MaxRecipients int `toml:"max_recipients"`
	// Guessing is slowed (package guard): after GuessLimit unknown tokens
	// from one client or sender within GuessWindow, it gets 450 4.7.1 for
	// GuessBlock. GuessLimit 0 turns this off.
	GuessLimit  int      `toml:"guess_limit"`
	GuessWindow Duration `toml:"guess_window"`
	GuessBlock  Duration `toml:"guess_block"`
	// GuessTrustedNetworks are shared upstreams (Google Workspace's
	// outbound ranges, say) whose client address alone is never blocked;
	// a (client, sender) pair from them still is.
	GuessTrustedNetworks []string `toml:"guess_trusted_networks"`

	GuessTrusted []NetworkSpec `toml:"-"`
}

// DKIM is one signing key.
type DKIM struct {
	Domain         string `toml:"domain"`
	Selector       string `toml:"selector"`
	PrivateKeyFile string `toml:"private_key_file"`

	Signer crypto.Signer `toml:"-"`
}

// List is one restricted address.
type List struct {
	Address        string   `toml:"address"`
	Name           string   `toml:"name"`
	ListID         string   `toml:"list_id"`
	Recipients     []string `toml:"recipients"`
	RecipientsFile string   `toml:"recipients_file"`
	BounceAddress  string   `toml:"bounce_address"`
	HideSender     bool     `toml:"hide_sender"`
	// Report is the report senders get by default: "none", "summary"
	// or "failures" (a token's report overrides it).
	Report string `toml:"report"`
	// BounceForward is the mailbox that receives mail to the bounce
	// address that is no recognisable delivery report; "" drops it.
	BounceForward string `toml:"bounce_forward"`
	// Aliases are addresses that Postfix's virtual_alias_maps or
	// alias_maps rewrite to this list, declared as intended: the milter,
	// which sees recipients before aliases are expanded, judges them as the
	// list. An alias not declared is a problem check-postfix reports.
	Aliases []string `toml:"aliases"`
	// Owners may sign in to the web page and manage this list's tokens.
	Owners []string `toml:"owners"`

	Addr   address.Address `toml:"-"`
	Bounce address.Address `toml:"-"`
	// BounceFwd is the parsed BounceForward (zero when none).
	BounceFwd address.Address `toml:"-"`
	// AliasAddrs are the parsed Aliases.
	AliasAddrs []address.Address `toml:"-"`
	// OwnerAddrs are the parsed Owners.
	OwnerAddrs []address.Address `toml:"-"`
	// Members are the recipients and the recipients_file's addresses,
	// deduplicated, in canonical form (ASCII domain). Read-only: deliveries
	// share the slice.
	Members []string `toml:"-"`
}

// Default returns the configuration that applies to every key a file leaves
// out. It is also the embedded configuration of `restrictedmail demo`.
func Default() *Config {
	host, err := os.Hostname()
	if err != nil || !strings.Contains(host, ".") {
		host = "localhost.localdomain"
	}
	return &Config{
		Hostname:           host,
		RecipientDelimiter: "+",
		Log:                Log{Level: "info", Format: "text"},
		Store: Store{
			Path:             DefaultStorePath,
			MaxOpenConns:     10,
			ConnectTimeout:   Duration(5 * time.Second),
			StatementTimeout: Duration(10 * time.Second),
		},
		Milter: Milter{
			Listen:       "inet:127.0.0.1:8025",
			SocketMode:   0o660,
			ReadTimeout:  Duration(5 * time.Minute),
			WriteTimeout: Duration(30 * time.Second),
		},
		LMTP: LMTP{
			Listen:          "inet:127.0.0.1:8024",
			SocketMode:      0o660,
			MaxMessageSize:  50 << 20,
			MaxRecipients:   1000,
			ReadTimeout:     Duration(5 * time.Minute),
			WriteTimeout:    Duration(5 * time.Minute),
			GiveUpAfter:     Duration(96 * time.Hour),
			Lease:           Duration(2 * time.Minute),
			ShutdownTimeout: Duration(30 * time.Second),
		},
		API: defaultAPI(),
		Web: defaultWeb(),
		Relay: Relay{
			Address:        "127.0.0.1:10026",
			TLS:            "none",
			MaxRecipients:  50,
			Connections:    4,
			ConnectTimeout: Duration(30 * time.Second),
			CommandTimeout: Duration(5 * time.Minute),
		},
		Postfix: Postfix{CheckAtStart: true},
		Reports: Reports{Window: Duration(time.Hour), PollInterval: Duration(5 * time.Second)},
		Tokens: Tokens{
			Prefix:        "RMTOKEN",
			Header:        "X-Restricted-Token",
			DefaultTTL:    Duration(72 * time.Hour),
			DefaultUses:   1,
			MaxRecipients: DefaultMaxRecipients,
			GuessLimit:    10,
			GuessWindow:   Duration(10 * time.Minute),
			GuessBlock:    Duration(15 * time.Minute),
		},
	}
}

// List returns the restricted list at address a (subaddress already
// removed), or nil.
func (c *Config) List(a address.Address) *List { return c.byAddr[a.Key()] }

// KeyFor returns the DKIM key for domain, or nil.
func (c *Config) KeyFor(domain string) *DKIM { return c.keys[strings.ToLower(domain)] }

// SpoolDir is where the LMTP endpoint spools messages: spool_dir, or
// "spool" beside the SQLite store (/var/lib/restrictedmail/spool with
// PostgreSQL).
func (c *Config) SpoolDir() string {
	if c.LMTP.SpoolDir != "" {
		return c.LMTP.SpoolDir
	}
	if c.Store.Path == "" {
		return defaultSpoolDir
	}
	return joinDir(c.Store.Path, "spool")
}

// ID returns the List-Id of RFC 2919: list_id, or the address with its @
// turned into a dot ("board.example.org").
func (l *List) ID() string {
	if l.ListID != "" {
		return l.ListID
	}
	return l.Addr.Local + "." + l.Addr.Domain
}

// Reports configures the reports to senders (a list's or token's
// "report") and the handling of bounces.
type Reports struct {
	// Window is how long the one follow-up report waits, after the first
	// bounce that arrives once a delivery's report has gone out, for more.
	Window Duration `toml:"window"`
	// PollInterval is how often the daemon looks for reports due.
	PollInterval Duration `toml:"poll_interval" reload:"restart"`
}
