-- The hook-count run of `make bench` (hooked calls per allocation, traced): the four
-- allocation shapes of testbins/realworld/workloads/lua.lua — string building, table
-- churn, closures with coroutines, binary trees — at about a tenth of its scale 1, so
-- that every hooked call can be traced (one line per enter and exit) in seconds.
local h = 0
for r = 1, 60 do
  local parts = {}
  for i = 1, 200 do parts[#parts + 1] = string.format("%d:%s;", i * r, ("x"):rep(i % 13)) end
  local s = table.concat(parts):gsub("x+", function(m) return #m end)
  local t = ""
  for i = 1, 40 do t = t .. tostring(i + r) .. "," end
  h = (h + #s + #t) % 4294967296
end
for r = 1, 25 do
  local list, index = {}, {}
  for i = 1, 300 do list[i] = { id = i, name = "item" .. i, tags = { i % 3, i % 5, i % 7 }, r = r } end
  for i = 1, #list do index[list[i].name] = list[i] end
  for i = 1, 300, 3 do index["item" .. i] = nil end
  table.sort(list, function(a, b) return (a.id * 7919) % 301 < (b.id * 7919) % 301 end)
  h = (h + list[1].id) % 4294967296
end
for r = 1, 150 do
  local fs = {}
  for i = 1, 100 do local k = i + r; fs[i] = function(x) return x * k + #fs end end
  local co = coroutine.wrap(function() for i = 1, #fs do coroutine.yield(fs[i](i)) end end)
  for _ = 1, #fs do h = (h + co()) % 4294967296 end
end
local function tree(d) if d == 0 then return { false, false } end return { tree(d - 1), tree(d - 1) } end
local function check(t) if not t[1] then return 1 end return 1 + check(t[1]) + check(t[2]) end
for d = 4, 10, 2 do for _ = 1, 1 << (14 - d) do h = (h + check(tree(d))) % 4294967296 end end
print("hooks.lua", h)
