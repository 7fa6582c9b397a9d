-- miltertest script: ordinary mail (no restricted recipient) passes
-- restrictedmail's milter, which accepts it at DATA, once every recipient
-- is known, without asking for its headers or body.
--
--   MILTER_PORT=8025 miltertest -s ordinary.lua
--
-- The milter must listen on 127.0.0.1:$MILTER_PORT.

local port = os.getenv("MILTER_PORT")
if port == nil or port == "" then
  error("set MILTER_PORT to the milter's TCP port on 127.0.0.1")
end
local conn = mt.connect("inet:" .. port .. "@127.0.0.1")
if conn == nil then
  error("mt.connect() failed")
end

-- What the milter negotiated (mt.connect negotiates with miltertest's
-- defaults): no connect, HELO or unknown events; no waiting for the
-- replies to MAIL FROM, headers and body; no modification action.
local options = {
  NOCONNECT = SMFIP_NOCONNECT, NOHELO = SMFIP_NOHELO, NOUNKNOWN = SMFIP_NOUNKNOWN,
  NR_MAIL = SMFIP_NR_MAIL, NR_HDR = SMFIP_NR_HDR, NR_BODY = SMFIP_NR_BODY,
}
for name, opt in pairs(options) do
  if not mt.test_option(conn, opt) then
    error("protocol option " .. name .. " was not negotiated")
  end
end
local decisions = { NR_RCPT = SMFIP_NR_RCPT, NR_DATA = SMFIP_NR_DATA, NR_EOH = SMFIP_NR_EOH }
for name, opt in pairs(decisions) do
  if mt.test_option(conn, opt) then
    error("protocol option " .. name .. " was negotiated, but the milter decides there")
  end
end
local modifications = {
  ADDHDRS = SMFIF_ADDHDRS, CHGBODY = SMFIF_CHGBODY, ADDRCPT = SMFIF_ADDRCPT, DELRCPT = SMFIF_DELRCPT,
  CHGHDRS = SMFIF_CHGHDRS, QUARANTINE = SMFIF_QUARANTINE, CHGFROM = SMFIF_CHGFROM,
}
for name, act in pairs(modifications) do
  if mt.test_action(conn, act) then
    error("modification action " .. name .. " was negotiated; the milter never modifies mail")
  end
end

mt.macro(conn, SMFIC_MAIL, "i", "MTQUEUE1")
if mt.mailfrom(conn, "poster@example.net") ~= nil then
  error("mt.mailfrom() failed")
end
if mt.getreply(conn) ~= SMFIR_CONTINUE then
  error("MAIL FROM: unexpected reply")
end

-- Every recipient gets "continue": an accept at RCPT would end the
-- milter's part in the whole transaction in Postfix.
for _, rcpt in ipairs({ "dave@example.org", "erin@example.com" }) do
  if mt.rcptto(conn, rcpt) ~= nil then
    error("mt.rcptto(" .. rcpt .. ") failed")
  end
  if mt.getreply(conn) ~= SMFIR_CONTINUE then
    error("RCPT " .. rcpt .. ": want continue")
  end
end

if mt.data(conn) ~= nil then
  error("mt.data() failed")
end
if mt.getreply(conn) ~= SMFIR_ACCEPT then
  error("DATA: want accept for ordinary mail")
end

mt.disconnect(conn)
