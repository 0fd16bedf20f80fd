-- Argo CD health of a tradebot.dev Backtest, from status.phase.
local hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status ~= nil then
  local phase = obj.status.phase
  if phase == "Succeeded" then
    hs.status = "Healthy"
  elseif phase == "Failed" then
    hs.status = "Degraded"
  end
  if obj.status.message ~= nil then
    hs.message = obj.status.message
  elseif phase ~= nil then
    hs.message = phase
  end
end
return hs
