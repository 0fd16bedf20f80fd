-- Argo CD health of a tradebot.dev Strategy, from status.phase.
local hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status ~= nil then
  local gen = obj.metadata.generation
  if obj.status.observedGeneration ~= nil and gen ~= nil and obj.status.observedGeneration < gen then
    hs.message = "the operator has not seen the latest spec yet"
    return hs
  end
  local phase = obj.status.phase
  if phase == "Ready" then
    hs.status = "Healthy"
  elseif phase == "Invalid" then
    hs.status = "Degraded"
  end
  if obj.status.message ~= nil then hs.message = obj.status.message end
end
return hs
