// Package milter is restrictedmail's SMTP-time adapter: a milter for
// Postfix's smtpd_milters that rejects mail for a restricted address before
// Postfix accepts it, when the mail carries no valid posting token, and
// stays out of the way of every other message.
//
// # Cost
//
// The milter sits in the path of every message the organisation receives,
// so the ordinary path (no restricted recipient) is built to cost nothing
// beyond the milter protocol itself. The negotiation asks Postfix not to send
// connect, HELO and unknown-command events at all, and not to wait for our
// reply to MAIL FROM, header and body events, whose answer never varies (the
// decisions are taken at RCPT, DATA, end of headers and end of message).
// It asks for no modification action: the milter only accepts and rejects.
// The one action flag it keeps, SMFIF_SETSYMLIST, is not a modification; it
// lets the milter ask for the queue id macro ("i") and, at RCPT, the
// client's address ({client_addr}, for the guard against token guessing,
// guard.go) instead of Postfix's default macro lists. Flags the MTA does not offer are dropped
// instead of failing the connection, so the milter also works with MTAs
// (and test clients such as miltertest) that offer less than Postfix.
//
// A recipient is told apart from a restricted address by a per-generation
// index of lower-cased list addresses, looked up without allocating; only a
// recipient that may be restricted is parsed and resolved with
// policy.Rules.Resolve, as the LMTP endpoint resolves it. The store is never
// touched for ordinary mail.
//
// The milter decides nothing itself: at each decision point it adds what
// it has learnt to each restricted address's policy.Facts and asks
// policy.Checker (policy.Decide underneath); a verdict that the facts still
// to come could change is Undecided, and the milter waits for them.
//
// # Decision points
//
//   - RCPT: a restricted recipient whose subaddress carries a token
//     (board+TOKEN@example.org) is judged at once. The first subaddress token
//     of a list is the one judged, as the endpoint groups recipients
//     (policy.GroupByList). A bad token rejects that recipient alone (550 5.7.1 and the sentence of the
//     verdict); other recipients of the message are unaffected. A token bound
//     to another sender is not rejected yet: the binding also matches the
//     From header, which is known only at the end of the headers.
//   - DATA: all recipients are known. Without a restricted recipient the
//     message is accepted here, which ends the milter's part in it: Postfix
//     sends neither its headers nor its body.
//   - End of headers: the loop marker (policy.LoopHeader naming the list)
//     rejects as a loop; a token from the token header field, or a subaddress
//     token waiting for the From header (parsed with policy.FromAddresses,
//     every charset go-message knows), is checked. When every restricted
//     recipient is decided, the verdict is returned here and the body is never
//     transferred. A body that is not multipart cannot carry a token part, so
//     the missing token is reported here too.
//   - Body: otherwise the body is streamed through an io.Pipe to
//     token.Finder.InBody running in its own goroutine, so that the scan
//     overlaps the transfer and memory stays bounded whatever the size of the
//     message. Once the finder has found the token part the rest of the body
//     is dropped.
//   - End of message: the token part's token is checked; any failure rejects
//     the whole message with the reply of the first restricted address that
//     failed (in the order the lists were first named), even when the
//     message also has ordinary recipients (at end of
//     message Postfix can only accept or reject the message as a whole).
//
// The milter checks tokens; it never spends them. The LMTP endpoint spends
// a token when it redistributes the message.
//
// # The accept-at-DATA trap
//
// In Postfix an accept returned for a RCPT event ends the milter's part in
// the whole SMTP transaction, not just for that recipient: a restricted
// recipient given after an accepted ordinary one would never be shown to the
// milter. Ordinary recipients therefore get "continue" at RCPT, and ordinary
// mail is accepted only at DATA, once every recipient is known.
//
// # Guessing
//
// Wherever a token is about to be looked up, a client address or envelope
// sender that presented too many unknown tokens lately (package guard,
// shared with the LMTP endpoint) gets 450 4.7.1 instead, without a lookup;
// an unknown token counts against both. Ordinary mail and restricted mail
// without a token never touch the guard.
//
// # Failures
//
// A store failure, a timeout or any internal error answers 451 4.3.0 (the
// TempFail verdict), never an unchecked accept. A panic in a callback is
// recovered, logged with its stack, and answered with a temporary failure at
// the next point where the MTA waits for an answer. Per-message state is
// reset at MAIL FROM, on abort and after end of message, since one milter
// connection carries every message of an SMTP session.
package milter
