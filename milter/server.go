package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/reply"
)

// Options configure a Server.
type Options struct {
	// Rules returns the rules of the configuration in force; it is called
	// once per message (at MAIL FROM) so that a reload (SIGHUP) takes
	// effect for the next message without cutting connections.
	Rules  func() *policy.Rules
	Tokens policy.Tokens // the store (*store.DB satisfies it)
	// Journal recognises a message that arrives again through another MX
	// host after its token was spent for it (the store); nil: none is.
	Journal policy.Journal
	Logger  *slog.Logger
	Now     func() time.Time // nil: time.Now
	// Guard slows down token guessing (shared with the LMTP endpoint);
	// nil: no limit.
	Guard policy.Guard
	// ReadTimeout and WriteTimeout bound one milter packet; zero:
	// DefaultTimeout and 30s. ReadTimeout also bounds how long end of
	// message waits for the body scan.
	ReadTimeout, WriteTimeout time.Duration
	// Observer is told of every decision (metrics); nil: none.
	Observer Observer
}

// Server is the milter server. Create it with New.
type Server struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	srv  *gomilter.Server
	obs  Observer // never nil

	// waitTimeout bounds how long end of message waits for the body scan.
	waitTimeout time.Duration
	// storeTimeout bounds one token lookup.
	storeTimeout time.Duration
	// tempFail is the 451 4.3.0 reply, built once so that the panic path
	// needs no formatting.
	tempFail *gomilter.Response
	checker  policy.Checker

	// idx is the restricted-address index of the configuration seen last;
	// it is rebuilt when Options.Rules returns other rules (a reload).
	idx atomic.Pointer[index]
}

// protocol is what the milter asks the MTA for: skip the events it never
// needs (connect, HELO, unknown commands) and do not wait for the replies
// that never vary (MAIL FROM, each header, each body chunk). The reply
// flags of the skipped events are asked for too, for an MTA that sends the
// event anyway. RCPT, DATA, end of headers and end of message keep their
// replies: those are where the milter decides.
const protocol = gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoUnknown |
	gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoUnknownReply |
	gomilter.OptNoMailReply | gomilter.OptNoHeaderReply | gomilter.OptNoBodyReply

// actions is the only action flag the milter asks for. It modifies no
// message; SMFIF_SETSYMLIST lets it name the macros it wants (the queue id).
const actions = gomilter.OptSetMacros

// storeTimeoutMax keeps a token lookup below Postfix's
// milter_command_timeout (30s), so that a hung store gets our 451 rather
// than Postfix's milter_default_action.
const storeTimeoutMax = 20 * time.Second

// DefaultTimeout is the read timeout of zero Options.ReadTimeout, the
// same as the configuration's default.
const DefaultTimeout = 5 * time.Minute

// New returns a server for opts. Options.Rules is required (New panics
// without it, like a wiring mistake should); a nil Tokens makes every
// token check a temporary failure.
func New(opts Options) *Server {
	if opts.Rules == nil {
		panic("milter.New: Options.Rules is nil")
	}
	s := &Server{opts: opts, log: opts.Logger, now: opts.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.obs = opts.Observer; s.obs == nil {
		s.obs = noObserver{}
	}
	readTimeout, writeTimeout := opts.ReadTimeout, opts.WriteTimeout
	if readTimeout <= 0 {
		readTimeout = DefaultTimeout
	}
	if writeTimeout <= 0 {
		writeTimeout = 30 * time.Second
	}
	s.waitTimeout = readTimeout
	s.storeTimeout = min(s.waitTimeout, storeTimeoutMax)
	s.checker = policy.Checker{Tokens: opts.Tokens, Guard: opts.Guard, Journal: opts.Journal}
	s.tempFail = s.reply(policy.Verdict{Reason: policy.TempFail})

	// Postfix gives the queue id from the first accepted RCPT on (from MAIL
	// FROM with smtpd_delay_open_until_valid_rcpt = no). Naming a macro per
	// stage also replaces Postfix's longer default lists, which the
	// ordinary path would otherwise receive and decode for nothing.
	queueID := []gomilter.MacroName{gomilter.MacroQueueId}
	// The client's address is for the guard (guard.go). It is asked for at
	// RCPT, the first decision point, where Postfix sends a macro packet
	// anyway; go-milter keeps it for the later stages of the message.
	// {rcpt_addr}, {rcpt_mailer} and {rcpt_host} are the recipient as
	// Postfix resolved it and where it routes it (session.go); they are in
	// Postfix's default milter_rcpt_macros too, for milter_protocol = 2.
	rcptMacros := []gomilter.MacroName{gomilter.MacroQueueId, gomilter.MacroClientAddr,
		gomilter.MacroRcptAddr, gomilter.MacroRcptMailer, gomilter.MacroRcptHost}
	s.srv = gomilter.NewServer(
		gomilter.WithDynamicMilter(func(uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize) gomilter.Milter {
			return &session{srv: s}
		}),
		gomilter.WithActions(actions),
		gomilter.WithProtocols(protocol),
		gomilter.WithNegotiationCallback(negotiate),
		gomilter.WithMacroRequest(gomilter.StageMail, queueID),
		gomilter.WithMacroRequest(gomilter.StageRcpt, rcptMacros),
		gomilter.WithMacroRequest(gomilter.StageData, queueID),
		gomilter.WithMacroRequest(gomilter.StageEOH, queueID),
		gomilter.WithMacroRequest(gomilter.StageEOM, queueID),
		gomilter.WithReadTimeout(readTimeout),
		gomilter.WithWriteTimeout(writeTimeout),
	)
	return s
}

// Serve accepts MTA connections on ln until Shutdown. It returns nil after
// Shutdown, and the listener's error otherwise.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if errors.Is(err, gomilter.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits until the MTA has closed
// the open ones or ctx ends; then it closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// negotiate keeps what the MTA offers of what the milter asks for. go-milter's
// own negotiation fails the connection when a flag is not offered; an MTA
// that cannot skip an event or a reply just costs a little more.
func negotiate(mtaVersion, milterVersion uint32, mtaActions, milterActions gomilter.OptAction, mtaProtocol, milterProtocol gomilter.OptProtocol, _ gomilter.DataSize) (uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize, error) {
	if mtaVersion < 2 {
		return 0, 0, 0, 0, fmt.Errorf("milter: MTA speaks milter protocol version %d; at least 2 is needed", mtaVersion)
	}
	// 64 KiB chunks bound what one body packet costs, whatever the MTA offers.
	return min(mtaVersion, milterVersion), milterActions & mtaActions, milterProtocol & mtaProtocol, gomilter.DataSize64K, nil
}

// indexFor returns the restricted-address index of rules, building it when
// the rules changed (a reload) since the last message.
func (s *Server) indexFor(rules *policy.Rules) *index {
	if x := s.idx.Load(); x != nil && x.rules == rules {
		return x
	}
	x := newIndex(rules)
	s.idx.Store(x)
	return x
}

// reply turns a verdict into the milter response, in this one place:
// accept for a pass, else the verdict's SMTP reply with its enhanced code at
// the start of the text, as go-milter expects.
func (s *Server) reply(v policy.Verdict) *gomilter.Response {
	if v.OK() {
		return gomilter.RespAccept
	}
	return s.replyOf(v.Reply(), v.Reason)
}

// replyOf is the one place a reply becomes a milter response.
func (s *Server) replyOf(r reply.Reply, reason policy.Reason) *gomilter.Response {
	resp, err := gomilter.RejectWithCodeAndReason(uint16(r.Code),
		fmt.Sprintf("%d.%d.%d %s", r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Text))
	if err != nil {
		// Cannot happen with policy's replies; a bare temporary failure is
		// still never an accept.
		s.log.Error("milter: building reply", "reason", reason.String(), "error", err)
		return gomilter.RespTempFail
	}
	return resp
}
