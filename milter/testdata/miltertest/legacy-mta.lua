-- miltertest script: an MTA that offers less than Postfix (milter protocol
-- version 2: no DATA event, no "no reply" flags, no macro requests, only
-- the connect event may be skipped) still works with restrictedmail's
-- milter: it keeps what is offered instead of failing the connection, and
-- answers the events it could not skip with "continue".
--
--   MILTER_PORT=8025 miltertest -s legacy-mta.lua

local port = os.getenv("MILTER_PORT")
if port == nil or port == "" then
  error("set MILTER_PORT to the milter's TCP port on 127.0.0.1")
end
local conn = mt.connect("inet:" .. port .. "@127.0.0.1")
if conn == nil then
  error("mt.connect() failed")
end
local err = mt.negotiate(conn, 2, SMFIF_ADDHDRS, SMFIP_NOCONNECT)
if err ~= nil then
  error("mt.negotiate() failed: " .. err)
end
if not mt.test_option(conn, SMFIP_NOCONNECT) then
  error("SMFIP_NOCONNECT was offered and not taken")
end
if mt.test_option(conn, SMFIP_NOHELO) then
  error("SMFIP_NOHELO was negotiated though not offered")
end

if mt.helo(conn, "client.example.net") ~= nil then
  error("mt.helo() failed")
end
if mt.getreply(conn) ~= SMFIR_CONTINUE then
  error("HELO: want continue")
end

-- Ordinary mail: with no DATA event, it is accepted at end of headers.
if mt.mailfrom(conn, "poster@example.net") ~= nil then
  error("mt.mailfrom() failed")
end
if mt.getreply(conn) ~= SMFIR_CONTINUE then
  error("MAIL FROM: want continue")
end
if mt.rcptto(conn, "dave@example.org") ~= nil then
  error("mt.rcptto() failed")
end
if mt.getreply(conn) ~= SMFIR_CONTINUE then
  error("RCPT: want continue")
end
if mt.header(conn, "Subject", "hello") ~= nil then
  error("mt.header() failed")
end
if mt.getreply(conn) ~= SMFIR_CONTINUE then
  error("header: want continue")
end
if mt.eoh(conn) ~= nil then
  error("mt.eoh() failed")
end
if mt.getreply(conn) ~= SMFIR_ACCEPT then
  error("end of headers: want accept for ordinary mail")
end

mt.disconnect(conn)
