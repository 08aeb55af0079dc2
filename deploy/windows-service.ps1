# Installs exo-authproxy as a Windows service (run in an elevated Windows PowerShell).
#
#   .\windows-service.ps1 -Exe 'C:\Program Files\exo-authproxy\exo-authproxy.exe' `
#                         -Config 'C:\ProgramData\exo-authproxy\exo-authproxy.toml'
#
# The service runs `exo-authproxy serve --config <Config>`: the same command as in a console.
# Stop/Restart-Service drain in-flight requests (30 s grace). Logs are appended to
# %ProgramData%\exo-authproxy\exo-authproxy.log. A failed start shows the exit code of
# README "Exit codes" as the service-specific code (sc.exe query exo-authproxy), e.g. 64 for
# a configuration error; `exo-authproxy check --config <Config>` says what to fix.
# The app certificate may stay in the certificate store: certificate_thumbprint = "<thumbprint>"
# (store = "LocalMachine\\My") in the config; import it with Import-PfxCertificate -Exportable and
# give the service account (LocalSystem by default) read access to its private key.
param(
    [Parameter(Mandatory)] [string] $Exe,
    [Parameter(Mandatory)] [string] $Config,
    [string] $Name = 'exo-authproxy'
)
$ErrorActionPreference = 'Stop'

& $Exe check --config $Config
if ($LASTEXITCODE -ne 0) { throw "exo-authproxy check failed ($LASTEXITCODE): fix the config first" }

New-Service -Name $Name `
    -BinaryPathName "`"$Exe`" serve --config `"$Config`"" `
    -DisplayName 'exo-authproxy' `
    -Description 'Modern authentication for legacy Exchange Online PowerShell scripts' `
    -StartupType Automatic | Out-Null
# Restart after a crash, not after a configuration error (those exit 64-67 and stay stopped
# until fixed: the SCM treats a service-specific exit code as a failure too, so keep the
# restart delay long enough to read the log).
sc.exe failure $Name reset= 86400 actions= restart/60000/restart/60000// | Out-Null
Start-Service -Name $Name
Get-Service -Name $Name
