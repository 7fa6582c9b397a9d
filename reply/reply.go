// Package reply names every SMTP reply restrictedmail sends, once: the
// verdicts' refusals, the LMTP endpoint's protocol answers and the
// temporary failures. Adapters turn a Reply into their wire form (go-smtp's
// SMTPError, a milter response) in one place each, so that a code or a
// sentence is changed here and nowhere else. The model is mox's
// smtp/codes.go: codes as names, enhanced codes from RFC 3463.
package reply

import "fmt"

// Reply is an SMTP reply: code, enhanced status code (RFC 3463) and text.
type Reply struct {
	Code     int
	Enhanced [3]int
	Text     string
}

func (r Reply) String() string {
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Text)
}

// Temporary reports whether the reply is a 4xx: the client keeps the
// message and tries again.
func (r Reply) Temporary() bool { return r.Code/100 == 4 }

// Reply codes (RFC 5321 §4.2.3).
const (
	C250Completed        = 250
	C421ServiceClosing   = 421
	C450MailboxBusy      = 450
	C451LocalError       = 451
	C501BadParamSyntax   = 501
	C550MailboxUnavail   = 550
	C552StorageExceeded  = 552
	C554TransactionFail  = 554
	C554NotAuthorisedUse = 554
)

// Enhanced status codes (RFC 3463), as class.subject.detail.
var (
	sOK            = [3]int{2, 0, 0}
	sBadDest       = [3]int{5, 1, 1} // bad destination mailbox address
	sBadDestSyntax = [3]int{5, 1, 3} // bad destination mailbox address syntax
	sBadSender     = [3]int{5, 1, 7} // bad sender's mailbox address syntax
	sTooBig        = [3]int{5, 3, 4} // message too big for system
	sLoop          = [3]int{5, 4, 6} // routing loop detected
	sMedia         = [3]int{5, 6, 0} // other or undefined media error
	sNotAuthorised = [3]int{5, 7, 1} // delivery not authorized, message refused
	tNotAuthorised = [3]int{4, 7, 1} // the same, for a while
	tSystem        = [3]int{4, 3, 0} // other or undefined mail system status
	tShutdown      = [3]int{4, 3, 2} // system not accepting network messages
	tDelivery      = [3]int{4, 4, 1} // no answer from host (the relay)
)

func list(addr string) string { return "<" + addr + ">" }

// The refusals of a posting token, one per reason; addr is the restricted
// address judged.

func OK() Reply { return Reply{C250Completed, sOK, "OK"} }

func NoToken(addr string) Reply {
	return Reply{C550MailboxUnavail, sNotAuthorised, "No posting token found: " + list(addr) + " is a restricted address; attach your token file, add the token header, or write to the address with the token you were given"}
}

func UnknownToken(addr string) Reply {
	return Reply{C550MailboxUnavail, sNotAuthorised, "Unknown posting token: this message's token is not valid for " + list(addr)}
}

func ExpiredToken(addr string) Reply {
	return Reply{C550MailboxUnavail, sNotAuthorised, "Posting token expired: ask for a new token to write to " + list(addr)}
}

func UsedUpToken(addr string) Reply {
	return Reply{C550MailboxUnavail, sNotAuthorised, "Posting token already used: it allowed no more messages to " + list(addr)}
}

func RevokedToken(addr string) Reply {
	return Reply{C550MailboxUnavail, sNotAuthorised, "Posting token revoked: it no longer allows messages to " + list(addr)}
}

func WrongSender(addr string) Reply {
	return Reply{C550MailboxUnavail, sNotAuthorised, "Posting token not valid for this sender: it was issued to another sender for " + list(addr)}
}

func WrongList(addr string) Reply {
	return Reply{C550MailboxUnavail, sNotAuthorised, "Posting token not valid for this address: it was issued for another address than " + list(addr)}
}

func Loop(addr string) Reply {
	return Reply{C554TransactionFail, sLoop, "Mail loop detected: this message was already distributed by " + list(addr)}
}

// Malformed names the address when there is one: the sender may have
// written to several.
func Malformed(addr string) Reply {
	if addr == "" {
		return Reply{C554TransactionFail, sMedia, "Message could not be read: its header is malformed or too large"}
	}
	return Reply{C554TransactionFail, sMedia, "Message to " + list(addr) + " could not be read: its header is malformed or too large"}
}

// Throttled is 4xx because the block ends.
func Throttled(addr string) Reply {
	return Reply{C450MailboxBusy, tNotAuthorised, "Too many invalid posting tokens for " + list(addr) + " from this client or sender; try again later"}
}

// Outsiders refuses a tokened message that also goes to recipients outside
// the restricted addresses: each of them would receive a usable token.
func Outsiders(addr string) Reply {
	return Reply{C550MailboxUnavail, sNotAuthorised, "Posting token would reach other recipients: a message with a token for " + list(addr) + " must go to restricted addresses only; send it again without the other recipients"}
}

// NotServedHere refuses a recipient Postfix routes to restrictedmail that
// is no restricted address it serves (Postfix would bounce it later).
var NotServedHere = Reply{C550MailboxUnavail, sBadDest, "Recipient is routed to the restricted-address service but is no restricted address it serves"}

// BadRestrictedRecipient refuses a recipient that resolves to a restricted
// address, or is routed to restrictedmail, but cannot be read.
var BadRestrictedRecipient = Reply{C550MailboxUnavail, sBadDestSyntax, "Recipient address of a restricted address cannot be read; write to the address as it is published"}

// TokenTempFail is a store or internal failure while judging a token.
func TokenTempFail() Reply {
	return Reply{C451LocalError, tSystem, "Temporary failure checking the posting token, please try again later"}
}

// The LMTP endpoint's answers outside the verdicts.
var (
	NotRestricted = Reply{C550MailboxUnavail, sBadDest, "Recipient is not a restricted address served here"}
	BadRecipient  = Reply{C501BadParamSyntax, sBadDestSyntax, "Bad recipient address syntax"}
	BadSender     = Reply{C501BadParamSyntax, sBadSender, "Bad sender address syntax"}
	LineTooLong   = Reply{C554TransactionFail, sMedia, "Message has a line longer than 2000 characters"}
	TempLocal     = Reply{C451LocalError, tSystem, "Temporary local problem, please try again later"}
	ShuttingDown  = Reply{C421ServiceClosing, tShutdown, "Shutting down, please try again later"}
	AccessDenied  = Reply{C554NotAuthorisedUse, sNotAuthorised, "Access denied"}
)

// Pending answers a delivery whose relay has not taken every copy yet:
// Postfix hands the message over again.
func Pending(n int) Reply {
	return Reply{C451LocalError, tDelivery, fmt.Sprintf("The list's relay did not take every copy yet (%d recipients pending); will retry", n)}
}

// Distributing answers a hand-over of a message that another restrictedmail
// host sharing the store is distributing now (it holds the delivery's
// lease): Postfix hands it over again, and by then the other host has
// finished it (250, nothing sent) or died (this host takes over).
var Distributing = Reply{C451LocalError, tSystem, "This message is being distributed by another host; try again later"}

// TooBig is the dry run's word for a message above the endpoint's limit
// (go-smtp answers the same on the wire).
func TooBig(limit int64) Reply {
	return Reply{C552StorageExceeded, sTooBig, fmt.Sprintf("Message larger than lmtp.max_message_size (%d bytes)", limit)}
}
