-- haproxy-ingress: the canonical host and path a request is routed by.
-- Generated into the state directory with haproxy.cfg; do not edit there.
-- The reference implementation, with the rules and why, is
-- operator/haproxy_ingress/canonical.py; property tests hold the two equal.
-- Sets txn.host and txn.path, or txn.invalid (the frontend answers 400).

local MAX_HOST_LENGTH = 253

local function canonical_host(value)
  if value == nil or value == "" then
    return ""
  end
  if value:find("[^\33-\126]") then
    return nil
  end
  if value:sub(1, 1) == "[" then
    local inner, port = value:match("^%[([0-9A-Fa-f:.]+)%](.*)$")
    if inner == nil or #inner < 2 or #inner > 45 then
      return nil
    end
    if port ~= "" and not port:match("^:[0-9]*$") or #port > 6 then
      return nil
    end
    return "[" .. inner:lower() .. "]"
  end
  local name, port = value:match("^([^:]*)(.*)$")
  if port ~= "" and (not port:match("^:[0-9]*$") or #port > 6) then
    return nil
  end
  if name:sub(-1) == "." then
    name = name:sub(1, -2)
  end
  if name == "" or #name > MAX_HOST_LENGTH then
    return nil
  end
  for label in (name .. "."):gmatch("([^.]*)%.") do
    if #label == 0 or #label > 63 or label:find("[^A-Za-z0-9-]")
        or label:sub(1, 1) == "-" or label:sub(-1) == "-" then
      return nil
    end
  end
  return name:lower()
end

local function percent_decode(raw)
  local out = {}
  local index = 1
  local length = #raw
  while index <= length do
    local position = raw:find("%", index, true)
    if position == nil then
      out[#out + 1] = raw:sub(index)
      break
    end
    out[#out + 1] = raw:sub(index, position - 1)
    local pair = raw:sub(position + 1, position + 2)
    if not pair:match("^%x%x$") then
      return nil
    end
    out[#out + 1] = string.char(tonumber(pair, 16))
    index = position + 3
  end
  return table.concat(out)
end

local function encode_byte(c)
  return string.format("%%%02X", c:byte())
end

local function canonical_path(raw)
  if raw == nil or raw == "" then
    return "/"
  end
  if raw:sub(1, 1) ~= "/" then
    return nil
  end
  local decoded = percent_decode(raw)
  if decoded == nil or decoded:find("\0", 1, true) then
    return nil
  end
  decoded = decoded:gsub("\\", "/")
  local segments = {}
  for segment in (decoded:sub(2) .. "/"):gmatch("([^/]*)/") do
    segments[#segments + 1] = segment
  end
  local out = {}
  local trailing = false
  for index, parameterised in ipairs(segments) do
    local last = index == #segments
    local segment = parameterised:match("^[^;]*")
    if segment == ".." then
      if #out == 0 then
        return nil
      end
      out[#out] = nil
      trailing = last
    elseif segment == "." or segment == "" then
      trailing = last
    else
      out[#out + 1] = (segment:gsub("[^A-Za-z0-9%-%._~!%$&'%(%)%*%+,=:@]", encode_byte))
      trailing = false
    end
  end
  local path = "/" .. table.concat(out, "/")
  if trailing and #out > 0 then
    path = path .. "/"
  end
  return path
end

core.register_action("ingress_canonical", { "http-req" }, function(txn)
  local host = canonical_host(txn.f:req_fhdr("host"))
  local url = txn.f:url()
  local path = nil
  if url ~= "*" then
    path = canonical_path(txn.f:path())
  end
  if host == nil or path == nil then
    txn:set_var("txn.invalid", 1)
    return
  end
  txn:set_var("txn.host", host)
  txn:set_var("txn.path", path)
end)

-- ingress-nginx snippets, as interpreted by snippets.py: txn.o_snippet holds
-- the program (records of fields, see snippets.encode). Values are data:
-- set as header values, a method or a reply, never parsed as configuration.
local RECORD, FIELD, PART = "\30", "\31", "\29"

local function split(text, separator)
  local out = {}
  local index = 1
  while true do
    local position = text:find(separator, index, true)
    if position == nil then
      out[#out + 1] = text:sub(index)
      return out
    end
    out[#out + 1] = text:sub(index, position - 1)
    index = position + 1
  end
end

local function query(txn)
  local q = txn.f:query()
  if q == nil then
    return ""
  end
  return q
end

local VARIABLES = {
  host = function(txn) return txn:get_var("txn.host") end,
  scheme = function(txn)
    if txn:get_var("txn.https") ~= nil then return "https" end
    return "http"
  end,
  https = function(txn)
    if txn:get_var("txn.https") ~= nil then return "on" end
    return ""
  end,
  request_uri = function(txn) return txn.f:pathq() end,
  uri = function(txn) return txn:get_var("txn.path") end,
  uri1 = function(txn) return (txn:get_var("txn.path") or "/"):sub(2) end,
  args = query,
  is_args = function(txn)
    if txn.f:query() ~= nil then return "?" end
    return ""
  end,
  remote_addr = function(txn) return txn:get_var("txn.client") end,
  remote_port = function(txn) return txn.f:src_port() end,
  server_port = function(txn) return txn.f:dst_port() end,
  request_method = function(txn) return txn.f:method() end,
  xff = function(txn)
    local client = tostring(txn:get_var("txn.client") or "")
    local sent = txn.f:req_fhdr("x-forwarded-for")
    if sent == nil or sent == "" then return client end
    return sent .. ", " .. client
  end,
}

local function variable(txn, name)
  local found = VARIABLES[name]
  local result
  if found ~= nil then
    result = found(txn)
  elseif name:sub(1, 4) == "hdr:" then
    result = txn.f:req_fhdr(name:sub(5))
  elseif name:sub(1, 7) == "cookie:" then
    result = txn.f:req_cook(name:sub(8))
  elseif name:sub(1, 4) == "arg:" then
    result = txn.f:url_param(name:sub(5))
  end
  if result == nil then
    return ""
  end
  return tostring(result)
end

local function evaluate(txn, encoded)
  if encoded == nil or encoded == "" then
    return ""
  end
  local out = {}
  for _, part in ipairs(split(encoded, PART)) do
    if part:sub(1, 1) == "V" then
      out[#out + 1] = variable(txn, part:sub(2))
    else
      out[#out + 1] = part:sub(2)
    end
  end
  return table.concat(out)
end

local function holds(list, item)
  if list == nil or list == "" then
    return true
  end
  for _, candidate in ipairs(split(list, ",")) do
    if candidate == item then
      return true
    end
  end
  return false
end

local function media_type(value)
  if value == nil then
    return ""
  end
  return (value:match("^%s*([^;%s]*)") or ""):lower()
end

local function condition(txn, fields)
  local operator = fields[2]
  if operator == "" then
    return true
  end
  local left = evaluate(txn, fields[1])
  if operator == "?" then
    return left ~= "" and left ~= "0"
  end
  local right = evaluate(txn, fields[3])
  if operator == "=" then
    return left == right
  end
  return left ~= right
end

local function with_args(txn, location)
  local q = query(txn)
  if q == "" then
    return location
  end
  if location:find("?", 1, true) then
    return location .. "&" .. q
  end
  return location .. "?" .. q
end

-- Response headers are evaluated here (request variables are gone by the
-- response) and kept in txn.o_snippet_res for ingress_snippet_response.
local function reply_with(txn, status, headers, body, location)
  local reply = txn:reply()
  reply:set_status(status)
  for _, header in ipairs(headers) do
    if holds(header[4], tostring(status)) and header[3] ~= "" and header[5] == "" then
      reply:add_header(header[2], header[3])
    end
  end
  if location ~= nil then
    reply:add_header("location", location)
  end
  if body ~= nil and body ~= "" then
    reply:add_header("content-type", "text/plain")
    reply:set_body(body)
  end
  txn:done(reply)
end

core.register_action("ingress_snippet", { "http-req" }, function(txn)
  local program = txn:get_var("txn.o_snippet")
  if program == nil or program == "" then
    return
  end
  local records = {}
  local headers = {}
  for _, record in ipairs(split(program, RECORD)) do
    local fields = split(record, FIELD)
    if condition(txn, fields) then
      records[#records + 1] = fields
      local code = fields[4]
      if code == "res_add" or code == "res_set" then
        headers[#headers + 1] = { code, fields[5], evaluate(txn, fields[6]), fields[7], fields[8] }
      end
    end
  end
  local saved = {}
  for _, header in ipairs(headers) do
    saved[#saved + 1] = table.concat(header, FIELD)
  end
  txn:set_var("txn.o_snippet_res", table.concat(saved, RECORD))
  local request_type = nil
  for _, fields in ipairs(records) do
    local code = fields[4]
    if code == "req_set" then
      local name, replace_only, types = fields[5], fields[7], fields[8]
      if request_type == nil then
        request_type = media_type(txn.f:req_fhdr("content-type"))
      end
      local present = txn.http:req_get_headers()[name] ~= nil
      if holds(types, request_type) and (replace_only == "" or present) then
        local text = evaluate(txn, fields[6])
        if text == "" and name:sub(-1) == "*" then
          local stem = name:sub(1, -2)
          for header, _ in pairs(txn.http:req_get_headers()) do
            if header:sub(1, #stem) == stem then
              txn.http:req_del_header(header)
            end
          end
        elseif text == "" then
          txn.http:req_del_header(name)
        else
          txn.http:req_set_header(name, text)
        end
      end
    elseif code == "method" then
      txn.http:req_set_method(fields[5])
    elseif code == "reply" then
      reply_with(txn, tonumber(fields[5]), headers, evaluate(txn, fields[6]), nil)
      return
    elseif code == "redirect" then
      local location = evaluate(txn, fields[6])
      if fields[7] == "1" then
        location = with_args(txn, location)
      end
      reply_with(txn, tonumber(fields[5]), headers, nil, location)
      return
    end
  end
end)

core.register_action("ingress_snippet_response", { "http-res" }, function(txn)
  local saved = txn:get_var("txn.o_snippet_res")
  if saved == nil or saved == "" then
    return
  end
  local status = tostring(txn.f:status())
  local response_type = media_type(txn.f:res_fhdr("content-type"))
  for _, record in ipairs(split(saved, RECORD)) do
    local header = split(record, FIELD)
    local code, name, text, statuses, types = header[1], header[2], header[3], header[4], header[5]
    if holds(statuses, status) and holds(types, response_type) then
      if code == "res_add" then
        txn.http:res_add_header(name, text)
      elseif text ~= "" then
        txn.http:res_set_header(name, text)
      elseif name:sub(-1) == "*" then
        local stem = name:sub(1, -2)
        for present, _ in pairs(txn.http:res_get_headers()) do
          if present:sub(1, #stem) == stem then
            txn.http:res_del_header(present)
          end
        end
      else
        txn.http:res_del_header(name)
      end
    end
  end
end)

-- Compiled patterns (use-regex paths, canary header patterns), per thread.
-- Patterns were checked by regex.py; the cache is dropped when it is full.
local MAX_CACHED = 1000
local cached = {}
local cached_count = 0

local function compiled(pattern)
  local regex = cached[pattern]
  if regex == nil then
    local ok, result = Regex.new(pattern, true)
    if not ok then
      return nil
    end
    if cached_count >= MAX_CACHED then
      cached = {}
      cached_count = 0
    end
    cached[pattern] = result
    cached_count = cached_count + 1
    regex = result
  end
  return regex
end

-- rewrite-target with capture groups: nginx's rewrite "(?i)<path>" <target>:
-- the whole path becomes the target, $1..$9 replaced by the pattern's
-- groups (empty when a group did not take part). The query is kept.
core.register_action("ingress_rewrite", { "http-req" }, function(txn)
  local path = txn:get_var("txn.path")
  local template = txn:get_var("txn.o_template")
  local regex = compiled("(?i)" .. txn:get_var("txn.o_rxpath"))
  if path == nil or template == nil or regex == nil then
    return
  end
  local matched, groups = regex:match(path)
  if not matched then
    return
  end
  local target = template:gsub("%$([1-9])", function(digit)
    return groups[tonumber(digit) + 1] or ""
  end)
  txn:set_var("txn.o_newpath", target)
end)

-- Canary header and cookie rules, in ingress-nginx's order (balancer.lua):
-- the header decides if its value is the wanted one (or matches the
-- pattern), else "always" / "never" when neither is set; then the cookie's
-- "always" / "never". Sets txn.canary to 1 (canary) or 0 (main); unset
-- leaves the choice to the weight.
-- affinity-canary-behavior: sticky (model.Canary.sticky_*): txn.o_csticky is
-- "<cookie>\n<attributes>\n<sides>", sides the values a client may keep
-- ("1" canary, "0" main). A kept value decides before every rule, as
-- ingress-nginx's balancer lets an affinitized request stay; without one,
-- txn.csticky_new asks the response to send the side the rules chose.
local function sticky_rule(txn)
  local sticky = txn:get_var("txn.o_csticky")
  if sticky == nil then
    return nil
  end
  local cookie, attributes, sides = sticky:match("^([^\n]+)\n([^\n]*)\n([01]*)$")
  return cookie, attributes, sides
end

core.register_action("ingress_canary", { "http-req" }, function(txn)
  local sticky, _, sides = sticky_rule(txn)
  if sticky ~= nil then
    local kept = txn.f:req_cook(sticky)
    if (kept == "1" or kept == "0") and sides:find(kept, 1, true) then
      txn:set_var("txn.canary", kept)
      return
    end
    txn:set_var("txn.csticky_new", "1")
  end
  local name = txn:get_var("txn.o_chdr")
  if name ~= nil then
    local value = txn.f:req_fhdr(name)
    if value ~= nil then
      local wanted = txn:get_var("txn.o_cval")
      local pattern = txn:get_var("txn.o_cpat")
      if wanted ~= nil then
        if value == wanted then
          txn:set_var("txn.canary", "1")
          return
        end
      elseif pattern ~= nil then
        local regex = compiled(pattern)
        if regex ~= nil and regex:exec(value) then
          txn:set_var("txn.canary", "1")
          return
        end
      elseif value == "always" then
        txn:set_var("txn.canary", "1")
        return
      elseif value == "never" then
        txn:set_var("txn.canary", "0")
        return
      end
    end
  end
  local cookie = txn:get_var("txn.o_ccook")
  if cookie ~= nil then
    local value = txn.f:req_cook(cookie)
    if value == "always" then
      txn:set_var("txn.canary", "1")
    elseif value == "never" then
      txn:set_var("txn.canary", "0")
    end
  end
end)

core.register_action("ingress_canary_sticky", { "http-res" }, function(txn)
  local cookie, attributes, sides = sticky_rule(txn)
  if cookie == nil then
    return
  end
  local side = txn:get_var("txn.canary") == "1" and "1" or "0"
  if sides:find(side, 1, true) then
    txn.http:res_add_header("set-cookie", cookie .. "=" .. side .. attributes)
  end
end)

-- Header sets (headers.py): "Name: value" lines, checked by the controller
-- (token names, visible ASCII values). Set as literal text: HAProxy never
-- reads them as a log-format string.
local function set_headers(text, set)
  if text == nil then
    return
  end
  for line in text:gmatch("([^\n]+)") do
    local name, value = line:match("^([^:]+): (.*)$")
    if name ~= nil then
      set(name, value)
    end
  end
end

core.register_action("ingress_request_headers", { "http-req" }, function(txn)
  set_headers(txn:get_var("txn.g_req"), function(name, value)
    txn.http:req_set_header(name, value)
  end)
end)

-- The ConfigMap's add-headers first, then the route's custom-headers (which
-- win on a shared name, as nginx's location-level more_set_headers).
core.register_action("ingress_response_headers", { "http-res" }, function(txn)
  local set = function(name, value)
    txn.http:res_set_header(name, value)
  end
  set_headers(txn:get_var("txn.g_res"), set)
  set_headers(txn:get_var("txn.o_hdrs"), set)
end)

-- proxy-redirect-from/-to and proxy-cookie-domain/-path (responses.py), as
-- nginx's proxy_redirect and proxy_cookie_*: case-sensitive literal
-- prefixes, except a cookie's Domain, compared whole, without case and
-- without a leading dot (which is kept). Values are text, never patterns.

local function replaced_prefix(value, from, to)
  if value ~= nil and value:sub(1, #from) == from then
    return to .. value:sub(#from + 1)
  end
  return nil
end

core.register_action("ingress_proxy_redirect", { "http-res" }, function(txn)
  local from, to = txn:get_var("txn.o_rfrom"), txn:get_var("txn.o_rto")
  if from == nil or to == nil then
    return
  end
  local headers = txn.http:res_get_headers()
  local location = headers["location"]
  local rewritten = replaced_prefix(location and location[0], from, to)
  if rewritten ~= nil then
    txn.http:res_set_header("location", rewritten)
  end
  -- Refresh: "5; url=http://…": the URL after "url=" (any case), as nginx.
  local refresh = headers["refresh"] and headers["refresh"][0]
  if refresh ~= nil then
    local at = refresh:lower():find("url=", 1, true)
    rewritten = at and replaced_prefix(refresh:sub(at + 4), from, to)
    if rewritten then
      txn.http:res_set_header("refresh", refresh:sub(1, at + 3) .. rewritten)
    end
  end
end)

local function rewrite_cookie(cookie, domain, path)
  local parts = split(cookie, ";")
  local changed = false
  for index = 2, #parts do
    local lead, name, equals, value = parts[index]:match("^(%s*)([^=%s]+)(%s*=%s*)(.-)%s*$")
    local attribute = name and name:lower()
    local new = nil
    if attribute == "domain" and domain ~= nil then
      local dot = value:sub(1, 1) == "." and "." or ""
      if value:sub(#dot + 1):lower() == domain[1] then
        new = dot .. domain[2]
      end
    elseif attribute == "path" and path ~= nil then
      new = replaced_prefix(value, path[1], path[2])
    end
    if new ~= nil then
      parts[index] = lead .. name .. equals .. new
      changed = true
    end
  end
  if changed then
    return table.concat(parts, ";")
  end
  return nil
end

local function pair(text)
  if text == nil then
    return nil
  end
  local from, to = text:match("^(%S+) (%S+)$")
  if from == nil then
    return nil
  end
  return { from, to }
end

core.register_action("ingress_proxy_cookie", { "http-res" }, function(txn)
  local domain = pair(txn:get_var("txn.o_ckdomain"))
  local path = pair(txn:get_var("txn.o_ckpath"))
  local cookies = txn.http:res_get_headers()["set-cookie"]
  if cookies == nil or (domain == nil and path == nil) then
    return
  end
  local out, changed = {}, false
  for index = 0, #cookies do
    local cookie = cookies[index]
    if cookie ~= nil then
      local rewritten = rewrite_cookie(cookie, domain, path)
      changed = changed or rewritten ~= nil
      out[#out + 1] = rewritten or cookie
    end
  end
  if changed then
    txn.http:res_del_header("set-cookie")
    for _, cookie in ipairs(out) do
      txn.http:res_add_header("set-cookie", cookie)
    end
  end
end)

-- default-backend and custom-http-errors (ingress-nginx's error pages).

-- The address of a server of backend `name` that takes new traffic, or nil.
local function usable_address(name)
  local backend = name and core.backends[name]
  if backend == nil then
    return nil
  end
  for _, server in pairs(backend.servers) do
    local status = server:get_stats()["status"]
    if status ~= nil and (status:sub(1, 2) == "UP" or status == "no check") then
      return server:get_addr()
    end
  end
  return nil
end

-- The headers ingress-nginx sends its default backend with an error.
local function error_headers(txn, code)
  local _, namespace, service, port = (txn:get_var("txn.backend") or "")
    :match("^(be)_([^_]+)_([^_]+)_([^_]+)$")
  local ingress_namespace, ingress = (txn:get_var("txn.o_errsrc") or "")
    :match("^([^/]*)/(.*)$")
  return {
    ["X-Code"] = code,
    ["X-Format"] = txn:get_var("txn.accept") or "text/html",
    ["X-Original-URI"] = txn:get_var("txn.orig_uri") or "/",
    ["X-Namespace"] = ingress_namespace or namespace or "",
    ["X-Ingress-Name"] = ingress or "",
    ["X-Service-Name"] = service or "",
    ["X-Service-Port"] = port or "",
  }
end

core.register_action("ingress_fallback", { "http-req" }, function(txn)
  local errors = txn:get_var("txn.o_errbe")
  if errors == nil or usable_address(txn:get_var("txn.backend")) ~= nil then
    return
  end
  for name, value in pairs(error_headers(txn, "503")) do
    txn.http:req_set_header(name, value)
  end
  txn:set_var("txn.backend", errors)
  txn:set_var("txn.fell_back", "1")
end)

core.register_action("ingress_error_page", { "http-res" }, function(txn)
  if txn:get_var("txn.fell_back") ~= nil then
    return  -- the error backend's own answer
  end
  local status = tostring(txn.sf:status())
  local codes = "," .. (txn:get_var("txn.o_errcodes") or "") .. ","
  if not codes:find("," .. status .. ",", 1, true) then
    return
  end
  local address = usable_address(txn:get_var("txn.o_errbe"))
  if address == nil then
    return  -- nobody to ask: the pod's own answer
  end
  local headers = {}
  for name, value in pairs(error_headers(txn, status)) do
    headers[name] = { value }
  end
  local ok, response = pcall(function()
    return core.httpclient():get({ url = "http://" .. address .. "/", headers = headers, timeout = 5000 })
  end)
  if not ok or response == nil or not response.status or response.status == 0 then
    return
  end
  local reply = txn:reply()
  reply:set_status(response.status)
  local content_type = response.headers and response.headers["content-type"]
  if content_type ~= nil then
    reply:add_header("content-type", content_type[0] or content_type[1])
  end
  reply:set_body(response.body or "")
  txn:done(reply)
end)

-- Basic auth for $apr1$ hashes (auth.py): libcrypt, which HAProxy's
-- userlists call, does not know Apache's MD5 variant, and a hash cannot be
-- converted, so it is verified here: a pure-Lua MD5 (RFC 1321) and the
-- apr1 algorithm (Apache's apr_md5.c: crypt-md5 with the "$apr1$" magic).

local MD5_SHIFT = {
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
  5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
}
local MD5_K = {}
for i = 1, 64 do
  MD5_K[i] = math.floor(math.abs(math.sin(i)) * 4294967296) & 0xffffffff
end

local unpack_words = string.unpack
local WORDS = "<I4I4I4I4I4I4I4I4I4I4I4I4I4I4I4I4"

-- One MD5 (RFC 1321). The rounds are four plain loops: a check runs 1,002
-- of these, so branches and allocations in the inner loop are avoided.
local function md5(message)
  local length = #message
  message = message .. "\128" .. string.rep("\0", (55 - length) % 64)
    .. string.pack("<I8", length * 8)
  local a0, b0, c0, d0 = 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476
  local K, S = MD5_K, MD5_SHIFT
  for chunk = 1, #message, 64 do
    local m = { unpack_words(WORDS, message, chunk) }
    local a, b, c, d = a0, b0, c0, d0
    local f, s
    for i = 1, 16 do
      f = ((b & c) | (~b & d)) + a + K[i] + m[i]
      s = S[i]
      f = f & 0xffffffff
      a, d, c = d, c, b
      b = (b + (((f << s) | (f >> (32 - s))) & 0xffffffff)) & 0xffffffff
    end
    for i = 17, 32 do
      f = ((d & b) | (~d & c)) + a + K[i] + m[(5 * i - 4) % 16 + 1]
      s = S[i]
      f = f & 0xffffffff
      a, d, c = d, c, b
      b = (b + (((f << s) | (f >> (32 - s))) & 0xffffffff)) & 0xffffffff
    end
    for i = 33, 48 do
      f = (b ~ c ~ d) + a + K[i] + m[(3 * i + 2) % 16 + 1]
      s = S[i]
      f = f & 0xffffffff
      a, d, c = d, c, b
      b = (b + (((f << s) | (f >> (32 - s))) & 0xffffffff)) & 0xffffffff
    end
    for i = 49, 64 do
      f = ((c ~ (b | ~d)) & 0xffffffff) + a + K[i] + m[(7 * i - 7) % 16 + 1]
      s = S[i]
      f = f & 0xffffffff
      a, d, c = d, c, b
      b = (b + (((f << s) | (f >> (32 - s))) & 0xffffffff)) & 0xffffffff
    end
    a0 = (a0 + a) & 0xffffffff
    b0 = (b0 + b) & 0xffffffff
    c0 = (c0 + c) & 0xffffffff
    d0 = (d0 + d) & 0xffffffff
  end
  return string.pack("<I4I4I4I4", a0, b0, c0, d0)
end

local ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

local function to64(value, count)
  local out = {}
  for i = 1, count do
    local index = (value & 0x3f) + 1
    out[i] = ITOA64:sub(index, index)
    value = value >> 6
  end
  return table.concat(out)
end

local function apr1(password, salt)
  local magic = "$apr1$"
  local final = md5(password .. salt .. password)
  local context = { password, magic, salt }
  for left = #password, 1, -16 do
    context[#context + 1] = final:sub(1, math.min(left, 16))
  end
  local bits = #password
  while bits > 0 do
    context[#context + 1] = (bits & 1 == 1) and "\0" or password:sub(1, 1)
    bits = bits >> 1
  end
  final = md5(table.concat(context))
  for i = 0, 999 do
    local odd = i & 1 == 1
    local parts = { odd and password or final }
    if i % 3 ~= 0 then
      parts[#parts + 1] = salt
    end
    if i % 7 ~= 0 then
      parts[#parts + 1] = password
    end
    parts[#parts + 1] = odd and final or password
    final = md5(table.concat(parts))
  end
  local f = { final:byte(1, 16) }
  return magic .. salt .. "$"
    .. to64((f[1] << 16) | (f[7] << 8) | f[13], 4)
    .. to64((f[2] << 16) | (f[8] << 8) | f[14], 4)
    .. to64((f[3] << 16) | (f[9] << 8) | f[15], 4)
    .. to64((f[4] << 16) | (f[10] << 8) | f[16], 4)
    .. to64((f[5] << 16) | (f[11] << 8) | f[6], 4)
    .. to64(f[12], 2)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_VALUE = {}
for i = 1, 64 do
  B64_VALUE[B64:byte(i)] = i - 1
end

local function base64_decode(text)
  if #text % 4 ~= 0 or #text > 1024 or not text:match("^[A-Za-z0-9+/]*=?=?$") then
    return nil
  end
  local out = {}
  for i = 1, #text, 4 do
    local n, pad = 0, 0
    for j = i, i + 3 do
      local value = B64_VALUE[text:byte(j)]
      if value == nil then
        value = 0
        pad = pad + 1
      end
      n = (n << 6) | value
    end
    local chunk = string.char((n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
    out[#out + 1] = chunk:sub(1, 3 - pad)
  end
  return table.concat(out)
end

-- The user and password of "Authorization: Basic …", or nil.
local function credentials(txn)
  local header = txn.f:req_fhdr("authorization")
  if header == nil then
    return nil
  end
  local encoded = header:match("^[Bb][Aa][Ss][Ii][Cc] +([A-Za-z0-9+/=]+) *$")
  if encoded == nil then
    return nil
  end
  local decoded = base64_decode(encoded)
  if decoded == nil then
    return nil
  end
  local user, password = decoded:match("^([^:]*):(.*)$")
  -- The user names auth.py accepts (USER_RE); others are nobody.
  if user == nil or not user:match("^[A-Za-z0-9][A-Za-z0-9_.@+-]*$") or #user > 64 then
    return nil
  end
  return user, password
end

-- Sets txn.auth_key ("<policy>/<user>") for the $apr1$ map lookup.
core.register_action("ingress_auth_user", { "http-req" }, function(txn)
  local policy = txn:get_var("txn.auth")
  local user = credentials(txn)
  if policy ~= nil and user ~= nil then
    txn:set_var("txn.auth_key", policy .. "/" .. user)
  end
end)

local MAX_VERIFIED = 10000
local verified = {}
local verified_count = 0

-- Sets txn.auth_ok when the password matches the user's $apr1$ hash (txn.apr1).
core.register_action("ingress_apr1", { "http-req" }, function(txn)
  local hashed = txn:get_var("txn.apr1")
  local user, password = credentials(txn)
  if hashed == nil or user == nil then
    return
  end
  local salt = hashed:match("^%$apr1%$([./0-9A-Za-z]+)%$[./0-9A-Za-z]+$")
  if salt == nil or #password > 1024 then
    return
  end
  -- Browsers resend credentials with every request: a verdict is kept
  -- (per thread, bounded) under an MD5 of hash and password, so only the
  -- first request of a user pays the 1,002 MD5s; a new hash is a new key.
  local key = md5(hashed .. "\0" .. password)
  local verdict = verified[key]
  if verdict == nil then
    verdict = apr1(password, salt) == hashed
    if verified_count >= MAX_VERIFIED then
      verified = {}
      verified_count = 0
    end
    verified[key] = verdict
    verified_count = verified_count + 1
  end
  if verdict then
    txn:set_var("txn.auth_ok", "1")
  end
end)

-- CORS (cors.py): txn.o_corigins is the route's list ("*", origins, or
-- "scheme://*.parent" for exactly one more label), lowered. Sets
-- txn.cors_origin to what Access-Control-Allow-Origin says: "*" when the
-- list allows any origin, else the request's own Origin when listed.
core.register_action("ingress_cors", { "http-req" }, function(txn)
  local allowed = txn:get_var("txn.o_corigins")
  local origin = txn.f:req_fhdr("origin")
  if allowed == nil or origin == nil then
    return
  end
  origin = origin:lower()
  -- The syntax cors.py accepts for listed origins (any scheme), so nothing
  -- else is echoed.
  if #origin > 300 or not origin:match("^[a-z][a-z0-9+.-]*://[a-z0-9.-]+$")
      and not origin:match("^[a-z][a-z0-9+.-]*://[a-z0-9.-]+:[0-9]+$") then
    if (" " .. allowed .. " "):find(" * ", 1, true) then
      txn:set_var("txn.cors_origin", "*")
    end
    return
  end
  for entry in allowed:gmatch("[^ ]+") do
    if entry == "*" then
      txn:set_var("txn.cors_origin", "*")
      return
    end
    if entry == origin then
      txn:set_var("txn.cors_origin", origin)
      return
    end
    local scheme, parent = entry:match("^([a-z][a-z0-9+.-]*://)%*%.(.+)$")
    if scheme ~= nil and origin:sub(1, #scheme) == scheme then
      local rest = origin:sub(#scheme + 1)
      local label = rest:match("^([a-z0-9-]+)%.")
      if label ~= nil and rest:sub(#label + 2) == parent then
        txn:set_var("txn.cors_origin", origin)
        return
      end
    end
  end
end)

-- External auth (auth-url): txn.ext is "url~method~timeout~signin~redirect~headers~param"
-- (base64 words, "-" for none; haproxy/config.py _ext_entries). Sets
-- txn.ext_status to "200" (any 2xx: let in), "401", "403", or "500"
-- (anything else, a timeout, a refused connection); an error here leaves it
-- unset, which the frontend also answers with 500.
local HOP_BY_HOP = {
  ["host"] = true, ["content-length"] = true, ["transfer-encoding"] = true,
  ["connection"] = true, ["keep-alive"] = true, ["upgrade"] = true, ["te"] = true,
  ["expect"] = true, ["proxy-connection"] = true,
}

local function word(text)
  if text == nil or text == "-" then
    return nil
  end
  return base64_decode(text)
end

local function url_encode(text)
  return (text:gsub("[^A-Za-z0-9%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

-- nginx variables of auth-url ($host only, as its host: translate checked
-- the URL for every host of the Ingress's rules, all exact) and auth-signin
-- (auth.SIGNIN_VARIABLES), expanded for this request. nil: one cannot be.
local function host_header(txn)
  local sent = txn.f:req_fhdr("host")
  if sent ~= nil and (sent:match("^[%w%.%-]+$") or sent:match("^[%w%.%-]+:%d+$")) then
    return sent
  end
  return txn:get_var("txn.host")
end

local EXPANSIONS = {
  host = function(txn) return txn:get_var("txn.host") end,
  http_host = host_header,
  best_http_host = host_header,
  escaped_request_uri = function(txn) return url_encode(txn.f:url()) end,
  request_uri = function(txn) return txn.f:url() end,
  scheme = function(txn) return txn:get_var("txn.https") and "https" or "http" end,
  request_method = function(txn) return txn.f:method() end,
}
EXPANSIONS.pass_access_scheme = EXPANSIONS.scheme

local function expand(text, txn)
  if not text:find("$", 1, true) then
    return text
  end
  local missing = false
  local result = text:gsub("%$([%a_][%w_]*)", function(name)
    local value = EXPANSIONS[name] and EXPANSIONS[name](txn)
    if value == nil then
      missing = true
      return ""
    end
    return value
  end)
  if missing then
    return nil
  end
  return result
end

-- Whether the query of ``url`` sets ``param`` (ingress-nginx then redirects
-- to auth-signin as it is, rd= and all).
local function sets_param(url, param)
  local query = url:match("%?(.*)$")
  return query ~= nil and ("&" .. query):find("&" .. param .. "=", 1, true) ~= nil
end

core.register_action("ingress_ext_auth", { "http-req" }, function(txn)
  txn:set_var("txn.ext_status", "500")
  local fields = {}
  for field in (txn:get_var("txn.ext") or ""):gmatch("[^~]+") do
    fields[#fields + 1] = field
  end
  if #fields ~= 7 then
    return
  end
  local url, method, timeout = word(fields[1]), fields[2], tonumber(fields[3])
  local signin, redirect, copied = word(fields[4]), word(fields[5]), word(fields[6])
  local param = word(fields[7]) or "rd"
  url = url and expand(url, txn)
  if url == nil or timeout == nil then
    return
  end
  local scheme = txn:get_var("txn.https") and "https" or "http"
  local original = scheme .. "://" .. (txn.f:req_fhdr("host") or "") .. txn.f:url()
  local headers = {}
  for name, values in pairs(txn.http:req_get_headers()) do
    if not HOP_BY_HOP[name] then
      local list = {}
      for index = 0, #values do
        list[#list + 1] = values[index]
      end
      headers[name] = list
    end
  end
  headers["x-original-url"] = { original }
  headers["x-original-method"] = { txn.f:method() }
  headers["x-real-ip"] = { tostring(txn:get_var("txn.client") or "") }
  headers["x-auth-request-redirect"] = redirect and { redirect } or nil
  local client = core.httpclient()
  -- HAProxy 2.6.12's httpclient retries a request that timed out 3 times
  -- (measured: 4 attempts, 4 x timeout in all), so each attempt gets a
  -- quarter: the whole check stays within auth-timeout.
  local request = { url = url, headers = headers, timeout = math.max(1, timeout // 4) }
  local response
  if method == "HEAD" then
    response = client:head(request)
  elseif method == "POST" then
    response = client:post(request)
  else
    response = client:get(request)
  end
  local status = response and tonumber(response.status) or 0
  if status >= 200 and status < 300 then
    if copied ~= nil and response.headers ~= nil then
      for name in copied:gmatch("[^,]+") do
        local values = response.headers[name]
        if values ~= nil and values[0] ~= nil then
          txn.http:req_set_header(name, values[0])
        end
      end
    end
    txn:set_var("txn.ext_status", "200")
  elseif status == 401 then
    txn:set_var("txn.ext_status", "401")
    signin = signin and expand(signin, txn)
    if signin ~= nil and sets_param(signin, param) then
      txn:set_var("txn.ext_signin", signin)
    elseif signin ~= nil then
      local separator = signin:find("?", 1, true) and "&" or "?"
      txn:set_var("txn.ext_signin", signin .. separator .. param .. "=" .. url_encode(original))
    end
  elseif status == 403 then
    txn:set_var("txn.ext_status", "403")
  end
end)

-- auth-tls-match-cn: the pattern (checked by regex.py) searched in the
-- client certificate's subject DN, case-sensitively, as nginx's
-- "$ssl_client_s_dn !~ pattern". No certificate: an empty DN.
core.register_action("ingress_client_cn", { "http-req" }, function(txn)
  local regex = compiled(txn:get_var("txn.ca_cn"))
  if regex ~= nil and regex:exec(txn:get_var("txn.ca_sdn") or "") then
    txn:set_var("txn.ca_cn_ok", "1")
  end
end)

-- auth-tls-verify-depth: count the certificates the client sent beyond its
-- own (ssl_c_chain_der: DER certificates, one after the other) that are not
-- self-signed, by walking just enough DER to compare each one's issuer and
-- subject names. More than txn.ca_depth allows, or anything unreadable,
-- fails verification (X509_V_ERR_CERT_CHAIN_TOO_LONG, 22).
local function der_item(s, i)
  -- The item at i: its tag, where its content starts, and where it ends (exclusive).
  local tag, first = s:byte(i), s:byte(i + 1)
  if tag == nil or first == nil then
    return nil
  end
  local length, start = first, i + 2
  if first >= 0x80 then
    local count = first - 0x80
    if count < 1 or count > 4 then
      return nil
    end
    length = 0
    for k = 1, count do
      local byte = s:byte(i + 1 + k)
      if byte == nil then
        return nil
      end
      length = length * 256 + byte
    end
    start = i + 2 + count
  end
  local stop = start + length
  if stop > #s + 1 then
    return nil
  end
  return tag, start, stop
end

local function issued_certificates(chain)
  local i, count = 1, 0
  while i <= #chain do
    local tag, start, stop = der_item(chain, i)
    if tag ~= 0x30 then
      return nil
    end
    local tbs_tag, tbs, tbs_stop = der_item(chain, start)
    if tbs_tag ~= 0x30 or tbs_stop > stop then
      return nil
    end
    local j, fields = tbs, {}
    if chain:byte(j) == 0xA0 then -- [0] version
      local _, _, version_stop = der_item(chain, j)
      if version_stop == nil then
        return nil
      end
      j = version_stop
    end
    for k = 1, 5 do -- serial, signature algorithm, issuer, validity, subject
      local field_tag, _, field_stop = der_item(chain, j)
      if field_tag == nil or field_stop > tbs_stop then
        return nil
      end
      fields[k] = chain:sub(j, field_stop - 1)
      j = field_stop
    end
    if fields[3] ~= fields[5] then
      count = count + 1
    end
    i = stop
  end
  return count
end

core.register_action("ingress_chain_depth", { "http-req" }, function(txn)
  local limit = tonumber(txn:get_var("txn.ca_depth"))
  local count = issued_certificates(txn.f:ssl_c_chain_der() or "")
  if limit == nil or count == nil or count > limit then
    txn:set_var("txn.ca_failed", "1")
    txn:set_var("txn.ca_deep", "1")
  end
end)

-- auth-tls-pass-certificate-to-upstream: nginx's $ssl_client_escaped_cert,
-- the certificate as PEM (64-character lines), URL-encoded.
core.register_action("ingress_client_cert", { "http-req" }, function(txn)
  local der64 = txn:get_var("txn.ca_der")
  if der64 == nil then
    return
  end
  local lines = { "-----BEGIN CERTIFICATE-----" }
  for i = 1, #der64, 64 do
    lines[#lines + 1] = der64:sub(i, i + 63)
  end
  lines[#lines + 1] = "-----END CERTIFICATE-----"
  local pem = table.concat(lines, "\n") .. "\n"
  local escaped = pem:gsub("[^A-Za-z0-9%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end)
  txn:set_var("txn.ca_pem", escaped)
end)
