-- Allocation-heavy Lua workload for allocsite: string building, table churn,
-- closures and coroutines. Output is deterministic (no pairs() order over string
-- keys, no addresses, no time), so an original and a rewritten interpreter must
-- print byte-identical text.
local N = tonumber(arg and arg[1]) or 1

local function checksum(s, h)
  h = h or 0
  for i = 1, #s, 7 do h = (h * 31 + s:byte(i)) % 4294967296 end
  return h
end

-- 1. string building: concatenation, string.format, table.concat, gsub
local function strings(rounds)
  local h = 0
  for r = 1, rounds do
    local parts = {}
    for i = 1, 200 do
      parts[#parts + 1] = string.format("%d:%s;", i * r, ("x"):rep(i % 13))
    end
    local s = table.concat(parts)
    s = s:gsub("x+", function(m) return #m end)
    local t = ""
    for i = 1, 40 do t = t .. tostring(i + r) .. "," end
    h = checksum(s, h)
    h = checksum(t, h)
  end
  return h
end

-- 2. tables: records with string keys, arrays that grow, deletes that shrink
local function tables(rounds)
  local sum = 0
  for r = 1, rounds do
    local list = {}
    for i = 1, 300 do
      list[i] = { id = i, name = "item" .. i, tags = { i % 3, i % 5, i % 7 }, r = r }
    end
    local index = {}
    for i = 1, #list do index[list[i].name] = list[i] end
    for i = 1, 300, 3 do index["item" .. i] = nil end
    local kept = 0
    for i = 1, 300 do
      local e = index["item" .. i]
      if e then kept = kept + e.tags[1] + e.tags[2] + e.tags[3] end
    end
    table.sort(list, function(a, b) return (a.id * 7919) % 301 < (b.id * 7919) % 301 end)
    sum = (sum + kept + list[1].id) % 1000000007
  end
  return sum
end

-- 3. closures and coroutines
local function closures(rounds)
  local acc = 0
  for r = 1, rounds do
    local fs = {}
    for i = 1, 100 do
      local k = i + r
      fs[i] = function(x) return x * k + #fs end
    end
    local co = coroutine.wrap(function()
      for i = 1, #fs do coroutine.yield(fs[i](i)) end
    end)
    for _ = 1, #fs do acc = (acc + co()) % 1000000007 end
  end
  return acc
end

-- 4. a growing binary tree (the classic GC benchmark shape)
local function tree(depth)
  if depth == 0 then return { false, false } end
  depth = depth - 1
  return { tree(depth), tree(depth) }
end
local function check(t)
  if not t[1] then return 1 end
  return 1 + check(t[1]) + check(t[2])
end
local function trees(maxdepth)
  local total = 0
  for d = 4, maxdepth, 2 do
    local iters = 1 << (maxdepth - d + 4)
    for _ = 1, iters do total = total + check(tree(d)) end
  end
  return total
end

print("strings", strings(600 * N))
print("tables", tables(250 * N))
print("closures", closures(1500 * N))
print("trees", trees(12 + N))
local words = {}
for w in ("the quick brown fox jumps over the lazy dog"):gmatch("%a+") do words[#words + 1] = w:upper() end
table.sort(words)
print("words", table.concat(words, " "))
