-- miltertest script: mail to a restricted address that carries no posting
-- token is rejected at end of message with 550 5.7.1 and a sentence that
-- says what is wrong — also when the message has an ordinary recipient.
--
--   MILTER_PORT=8025 miltertest -s restricted-no-token.lua
--
-- The milter must listen on 127.0.0.1:$MILTER_PORT with board@example.org
-- configured as a restricted address.

local port = os.getenv("MILTER_PORT")
if port == nil or port == "" then
  error("set MILTER_PORT to the milter's TCP port on 127.0.0.1")
end
local conn = mt.connect("inet:" .. port .. "@127.0.0.1")
if conn == nil then
  error("mt.connect() failed")
end

mt.macro(conn, SMFIC_MAIL, "i", "MTQUEUE2")
if mt.mailfrom(conn, "poster@example.net") ~= nil then
  error("mt.mailfrom() failed")
end
for _, rcpt in ipairs({ "dave@example.org", "board@example.org" }) do
  mt.macro(conn, SMFIC_RCPT, "i", "MTQUEUE2")
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
if mt.getreply(conn) ~= SMFIR_CONTINUE then
  error("DATA: want continue, a restricted recipient needs a token")
end

local headers = {
  { "From", "Poster <poster@example.net>" },
  { "To", "board@example.org" },
  { "Subject", "no token" },
  { "MIME-Version", "1.0" },
  { "Content-Type", "multipart/mixed; boundary=b1" },
}
for _, h in ipairs(headers) do
  if mt.header(conn, h[1], h[2]) ~= nil then
    error("mt.header(" .. h[1] .. ") failed")
  end
end
if mt.eoh(conn) ~= nil then
  error("mt.eoh() failed")
end
if mt.getreply(conn) ~= SMFIR_CONTINUE then
  error("end of headers: want continue, the token may be in the body")
end

-- A multipart body whose only part is text: no token part.
if mt.bodystring(conn, "--b1\r\nContent-Type: text/plain\r\n\r\nHello board.\r\n--b1--\r\n") ~= nil then
  error("mt.bodystring() failed")
end
if mt.eom(conn) ~= nil then
  error("mt.eom() failed")
end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then
  error("end of message: want a reply code")
end
if not mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1",
    "No posting token found: <board@example.org> is a restricted address; attach your token file, add the token header, or write to the address with the token you were given") then
  error("end of message: want 550 5.7.1 No posting token found")
end

mt.disconnect(conn)
