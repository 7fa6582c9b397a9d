package reply

import (
	"strings"
	"testing"
)

// TestRepliesAreConsistent: every named reply's enhanced code has the
// class of its reply code (RFC 3463 §3.1: 2.X.X with 2yz, 4.X.X with 4yz,
// 5.X.X with 5yz), a text, and no line break that would split the reply.
func TestRepliesAreConsistent(t *testing.T) {
	t.Parallel()
	const addr = "board@example.org"
	all := map[string]Reply{
		"OK": OK(), "NoToken": NoToken(addr), "UnknownToken": UnknownToken(addr),
		"ExpiredToken": ExpiredToken(addr), "UsedUpToken": UsedUpToken(addr), "RevokedToken": RevokedToken(addr),
		"WrongSender": WrongSender(addr), "WrongList": WrongList(addr), "Loop": Loop(addr),
		"Malformed": Malformed(addr), "Malformed without list": Malformed(""), "Throttled": Throttled(addr),
		"TokenTempFail": TokenTempFail(), "NotRestricted": NotRestricted, "BadRecipient": BadRecipient,
		"BadSender": BadSender, "LineTooLong": LineTooLong, "TempLocal": TempLocal,
		"ShuttingDown": ShuttingDown, "AccessDenied": AccessDenied, "Pending": Pending(3), "TooBig": TooBig(1 << 20),
	}
	for name, r := range all {
		if r.Code/100 != r.Enhanced[0] {
			t.Errorf("%s: %s: the enhanced code's class is not the reply's", name, r)
		}
		if r.Text == "" || strings.ContainsAny(r.Text, "\r\n") {
			t.Errorf("%s: text %q", name, r.Text)
		}
		if r.Temporary() != (r.Code/100 == 4) {
			t.Errorf("%s: Temporary() = %v", name, r.Temporary())
		}
	}
	// A refusal names the restricted address, so that a sender who wrote
	// to several knows which one.
	for _, name := range []string{"NoToken", "UnknownToken", "ExpiredToken", "UsedUpToken", "RevokedToken", "WrongSender", "WrongList", "Loop", "Malformed", "Throttled"} {
		if !strings.Contains(all[name].Text, "<"+addr+">") {
			t.Errorf("%s does not name the address: %s", name, all[name])
		}
	}
	if got := OK().String(); got != "250 2.0.0 OK" {
		t.Errorf("OK = %q", got)
	}
}
