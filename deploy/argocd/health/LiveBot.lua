-- Argo CD health of a tradebot.dev LiveBot, from status.phase and its Ready condition.
local hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status == nil then return hs end
local gen = obj.metadata.generation
if obj.status.observedGeneration ~= nil and gen ~= nil and obj.status.observedGeneration < gen then
  hs.message = "the operator has not seen the latest spec yet"
  return hs
end
local phase = obj.status.phase
if obj.status.message ~= nil then hs.message = obj.status.message end
if phase == "Running" then
  hs.status = "Healthy"
  if obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == "Reachable" and c.status == "False" then
        hs.status = "Degraded"
        hs.message = c.message or "bot unreachable"
      end
    end
  end
elseif phase == "Suspended" then
  hs.status = "Suspended"
elseif phase == "Blocked" or phase == "Tripped" or phase == "Failed" then
  hs.status = "Degraded"
end
return hs
