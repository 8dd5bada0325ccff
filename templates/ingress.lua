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
core.register_action("ingress_canary", { "http-req" }, function(txn)
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
