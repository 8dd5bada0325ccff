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
