"""The Lua scripts: one round trip per tagged read and per tagged write.

A tagged value is stored as MAGIC, then "stamp key\\nstamp\\n" per tag, a blank line and
the payload django-redis encoded.
"""

from __future__ import annotations

import threading
from typing import Any

MAGIC = b"\x00TG1"

_LUA_FRESH = """
local MAGIC = '\\0TG1'
-- 1 and the payload for a tagged value whose tags are fresh, 2 when one of them was
-- invalidated, 3 and the value itself for a value stored without tags
local function check(v)
  if string.sub(v, 1, 4) ~= MAGIC then return 3, v end
  local stop = string.find(v, '\\n\\n', 5, true)
  if not stop then return 2, false end
  local keys, expected, odd = {}, {}, true
  for line in string.gmatch(string.sub(v, 5, stop), '([^\\n]*)\\n') do
    if odd then keys[#keys + 1] = line else expected[#expected + 1] = line end
    odd = not odd
  end
  if #keys > 0 then
    local current = redis.call('MGET', unpack(keys))
    for j = 1, #keys do
      if current[j] ~= expected[j] then return 2, false end
    end
  end
  return 1, string.sub(v, stop + 2)
end
"""

# KEYS: n value keys, then the stamp keys to capture (created with ARGV[2] when missing)
# ARGV: n, a fresh stamp token, stamp ttl (ms)
# Returns state, payload for each value key (0 missing, 1 tagged hit, 2 stale, 3 untagged
# hit), then the stamps.
READ_SCRIPT = (
    _LUA_FRESH
    + """
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  local state, payload = 0, false
  if v then state, payload = check(v) end
  out[#out + 1] = state
  out[#out + 1] = payload
end
for k = n + 1, #KEYS do
  local stamp = redis.call('GET', KEYS[k])
  if not stamp then
    stamp = ARGV[2]
    redis.call('SET', KEYS[k], stamp, 'PX', ARGV[3])
  end
  out[#out + 1] = stamp
end
return out
"""
)

# KEYS: n value keys, then the stamp keys of their tags
# ARGV: n, ttl (ms, 0 = none), fresh stamp token, stamp ttl (ms), mode, n payloads, expected stamps
# mode 'now': the current stamps (created when missing); 'add': the same, but only where no
# fresh value exists; 'cas': only if the stamps still equal the expected ones (else -1).
WRITE_SCRIPT = (
    _LUA_FRESH
    + """
local n = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local mode = ARGV[5]
local header = {}
for j = n + 1, #KEYS do
  local stamp = redis.call('GET', KEYS[j])
  if mode == 'cas' then
    if stamp ~= ARGV[5 + j] then return -1 end
  elseif not stamp then
    stamp = ARGV[3]
    redis.call('SET', KEYS[j], stamp, 'PX', ARGV[4])
  end
  header[#header + 1] = KEYS[j] .. '\\n' .. stamp .. '\\n'
end
local envelope = ''
if #header > 0 then envelope = MAGIC .. table.concat(header) .. '\\n' end
local stored = 0
for i = 1, n do
  local write = true
  if mode == 'add' then
    -- like SET NX, except that a value whose tags were invalidated counts as absent
    local kind = redis.call('TYPE', KEYS[i]).ok
    if kind == 'string' then
      if check(redis.call('GET', KEYS[i])) ~= 2 then write = false end
    elseif kind ~= 'none' then
      write = false
    end
  end
  if write then
    if ttl > 0 then
      redis.call('SET', KEYS[i], envelope .. ARGV[5 + i], 'PX', ttl)
    else
      redis.call('SET', KEYS[i], envelope .. ARGV[5 + i])
    end
    stored = stored + 1
  end
end
return stored
"""
)

# KEYS: the keys to look at. Returns how many exist, as EXISTS counts them, except that a
# value whose tags were invalidated does not (keys of other types always do).
EXISTS_SCRIPT = (
    _LUA_FRESH
    + """
local found = 0
for i = 1, #KEYS do
  local kind = redis.call('TYPE', KEYS[i]).ok
  if kind == 'string' then
    if check(redis.call('GET', KEYS[i])) ~= 2 then found = found + 1 end
  elseif kind ~= 'none' then
    found = found + 1
  end
end
return found
"""
)

UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def strip_envelope(value: bytes) -> bytes:
    """The payload of a tagged value, without checking its stamps."""
    stop = value.find(b"\n\n", len(MAGIC))
    return value[stop + 2 :] if stop >= 0 else value


class Scripts:
    """redis-py Script objects (EVALSHA, loading on NOSCRIPT), made once per process."""

    _lock = threading.Lock()
    read: Any = None
    write: Any = None
    unlock: Any = None
    exists: Any = None

    @classmethod
    def ensure(cls, client: Any) -> type[Scripts]:
        if cls.read is None:
            with cls._lock:
                if cls.read is None:
                    cls.write = client.register_script(WRITE_SCRIPT)
                    cls.unlock = client.register_script(UNLOCK_SCRIPT)
                    cls.exists = client.register_script(EXISTS_SCRIPT)
                    cls.read = client.register_script(READ_SCRIPT)
        return cls
