// Summarises one results file of the HTTP cache test suite (http-cache-tests, cache-tests.fyi) the way the
// suite itself classifies results: its own tests and its own lib/display.mjs determineTestResult, with
// dependencies honoured, as on cache-tests.fyi.
//
//   node summarize.mjs [--config NAME] [--known FILE] [--reruns DIR] RESULTS.json
//   node summarize.mjs --list-unexpected [--known FILE] RESULTS.json
//   node summarize.mjs --list-hidden-roots RESULTS.json
//
// RESULTS.json is what the suite's CLI prints (`npm run --silent cli --base=URL > RESULTS.json`).
// --known defaults to known-differences.txt beside this file. --reruns names a directory of logs of
// `--id=<test-id>` re-runs, one `<test-id>.log` per unexpected required failure (run.sh writes them): a
// failure whose re-run passed is reported as FLAKY and does not fail the run. --list-unexpected prints
// only the ids of the unexpected required failures, one a line (what run.sh re-runs). --list-hidden-roots
// prints the ids of the failed tests that are not themselves required but that required tests depend on,
// directly or through other dependency failures: the suite does not count those required tests, so a root
// that failed by chance (an optional test such as freshness-max-age) silently hides them (run.sh re-runs
// each root on its own, and the whole suite once more if one passes).
//
// Exit status: 0 no unexpected required failure, 1 some, 2 bad input (unreadable results, malformed
// known list, unknown option).

import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const suiteDir = path.join(here, 'node_modules', 'http-cache-tests')

// Result symbols, as lib/display.mjs's resultTypes (index 2) spells them.
const PASS = '✅'
const FAIL = '⛔️'
const OPTIONAL_FAIL = '⚠️'
const YES = 'Y'
const NO = 'N'
const SETUP_FAIL = '🔹'
const HARNESS_FAIL = '⁉️'
const DEPENDENCY_FAIL = '⚪️'
const RETRY = '↻'
const UNTESTED = '-'
const SYMBOLS = [PASS, FAIL, OPTIONAL_FAIL, YES, NO, SETUP_FAIL, HARNESS_FAIL, DEPENDENCY_FAIL, RETRY, UNTESTED]
const SYMBOL_NAMES = {
  [PASS]: 'pass',
  [FAIL]: 'fail',
  [OPTIONAL_FAIL]: 'optional fail',
  [YES]: 'yes',
  [NO]: 'no',
  [SETUP_FAIL]: 'setup fail',
  [HARNESS_FAIL]: 'harness fail',
  [DEPENDENCY_FAIL]: 'dependency failed',
  [RETRY]: 'retry',
  [UNTESTED]: 'untested'
}
// A required test with one of these fails the run unless it is a known difference.
const FAILING = new Set([FAIL, SETUP_FAIL, HARNESS_FAIL, RETRY])
const KINDS = ['required', 'optimal', 'check']

function die (message) {
  console.error(`summarize.mjs: ${message}`)
  process.exit(2)
}

function parseArgs (argv) {
  const opts = { config: null, known: path.join(here, 'known-differences.txt'), reruns: null, listUnexpected: false, results: null }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) die(`${arg} needs a value`)
      return argv[++i]
    }
    if (arg === '--config') opts.config = value()
    else if (arg === '--known') opts.known = value()
    else if (arg === '--reruns') opts.reruns = value()
    else if (arg === '--list-unexpected') opts.listUnexpected = true
    else if (arg === '--list-hidden-roots') opts.listHiddenRoots = true
    else if (arg === '-h' || arg === '--help') {
      console.log('usage: node summarize.mjs [--config NAME] [--known FILE] [--reruns DIR] [--list-unexpected | --list-hidden-roots] RESULTS.json')
      process.exit(0)
    } else if (arg.startsWith('-')) die(`unknown option ${arg}`)
    else if (opts.results === null) opts.results = arg
    else die(`unexpected argument ${arg}`)
  }
  if (opts.results === null) die('no results file given')
  if (opts.config === null) opts.config = path.basename(opts.results).replace(/\.json$/, '')
  return opts
}

// The known list: `<test-id><TAB><reason>` or `<test-id> # <reason>`; blank lines and # comments allowed.
// An id written `<config>:<test-id>` applies to that configuration only.
function readKnown (file, allIds, config) {
  let text
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    die(`cannot read the known-differences list ${file}: ${err.message}`)
  }
  const known = new Map()
  const warnings = []
  text.split(/\r?\n/).forEach((line, index) => {
    const where = `${path.basename(file)}:${index + 1}`
    if (/^\s*(#.*)?$/.test(line)) return
    const m = line.match(/^\s*(\S+?)(?:\t+|\s+#\s+)(.*\S)\s*$/)
    if (!m) die(`${where}: expected "<test-id><TAB><reason>" or "<test-id> # <reason>", got: ${line}`)
    const [, entry, reason] = m
    const scoped = entry.match(/^([a-z]+):(.+)$/)
    const id = scoped ? scoped[2] : entry
    if (!allIds.has(id)) warnings.push(`${where}: ${id} is not a test id of the suite`)
    if (scoped && scoped[1] !== config) return
    if (known.has(id)) warnings.push(`${where}: ${id} is listed twice`)
    known.set(id, reason)
  })
  return { known, warnings }
}

// The verdict of an `--id=<test-id>` re-run: the CLI prints a dump, then "==== Results" and
// "<symbol> - <message>" (there without honouring dependencies).
function readRerun (dir, id) {
  const file = path.join(dir, rerunFileName(id))
  let text
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch {
    return { found: false, file }
  }
  // eslint-disable-next-line no-control-regex
  const lines = text.replace(/\x1b\[[0-9;]*m/g, '').split(/\r?\n/)
  const marker = lines.map(l => l.trim()).lastIndexOf('==== Results')
  if (marker < 0) return { found: true, file, parsed: false }
  const verdict = lines.slice(marker + 1).find(l => l.trim() !== '')
  const m = verdict && verdict.trim().match(/^(\S+) - ?(.*)$/)
  if (!m || !SYMBOLS.includes(m[1])) return { found: true, file, parsed: false }
  return { found: true, file, parsed: true, symbol: m[1], message: m[2] }
}

export function rerunFileName (id) {
  return id.replace(/[^A-Za-z0-9._=-]/g, '_') + '.log'
}

function messageOf (result) {
  if (Array.isArray(result)) return `${result[0]}: ${result[1]}`
  if (result === undefined) return 'not run'
  if (result === true) return 'passed itself'
  return String(result)
}

async function main () {
  const opts = parseArgs(process.argv.slice(2))

  if (!fs.existsSync(path.join(suiteDir, 'package.json'))) {
    die(`the suite is not installed at ${suiteDir} (run: npm ci --no-audit --no-fund in ${here})`)
  }
  const load = rel => import(pathToFileURL(path.join(suiteDir, rel)).href)
  // As the suite's cli.mjs: tests/index.mjs plus the Surrogate-Control suite.
  const testSuites = [...(await load('tests/index.mjs')).default, (await load('tests/surrogate-control.mjs')).default]
  const { determineTestResult } = await load('lib/display.mjs')

  let results
  try {
    results = JSON.parse(fs.readFileSync(opts.results, 'utf8'))
  } catch (err) {
    die(`cannot read results ${opts.results}: ${err.message}`)
  }
  if (results === null || typeof results !== 'object' || Array.isArray(results) || Object.keys(results).length === 0) {
    die(`${opts.results} holds no test results`)
  }

  // Every test the CLI runs (it skips browser_only tests), in the suite's order.
  const tests = []
  let browserOnly = 0
  for (const suite of testSuites) {
    for (const test of suite.tests) {
      if (test.browser_only === true) { browserOnly++; continue }
      tests.push({ id: test.id, kind: test.kind || 'required', suite: suite.name, depends: test.depends_on || [] })
    }
  }
  const allIds = new Set(tests.map(t => t.id))
  const { known, warnings } = readKnown(opts.known, allIds, opts.config)
  const extra = Object.keys(results).filter(id => !allIds.has(id))

  for (const t of tests) {
    t.result = results[t.id]
    t.symbol = determineTestResult(testSuites, t.id, results, true)[2]
  }
  const failures = tests.filter(t => t.kind === 'required' && FAILING.has(t.symbol))
  for (const t of failures) {
    t.known = known.get(t.id)
    if (t.known === undefined && opts.reruns) t.rerun = readRerun(opts.reruns, t.id)
    t.flaky = t.rerun !== undefined && t.rerun.parsed && t.rerun.symbol === PASS
  }
  const unexpected = failures.filter(t => t.known === undefined && !t.flaky)

  if (opts.listUnexpected) {
    for (const t of failures.filter(t => t.known === undefined)) console.log(t.id)
    return
  }
  if (opts.listHiddenRoots) {
    const byId = new Map(tests.map(t => [t.id, t]))
    const roots = new Set()
    const walk = (t, seen) => {
      for (const d of t.depends) {
        const dep = byId.get(d)
        if (!dep || seen.has(d) || [PASS, YES].includes(dep.symbol)) continue
        seen.add(d)
        if (dep.symbol === DEPENDENCY_FAIL) walk(dep, seen)
        else if (dep.kind !== 'required') roots.add(d)
      }
    }
    for (const t of tests.filter(t => t.kind === 'required' && t.symbol === DEPENDENCY_FAIL)) walk(t, new Set())
    for (const id of roots) console.log(id)
    return
  }

  const name = opts.config
  const out = []
  out.push(`== cache-tests ${name}: ${opts.results}`)
  out.push(`${tests.length} tests run by the CLI` + (browserOnly ? ` (${browserOnly} browser-only tests not counted)` : '') +
    `, ${Object.keys(results).length} results`)
  if (extra.length) out.push(`warning: results for ids the suite does not have: ${extra.join(', ')}`)

  // Counts per kind and symbol.
  const used = SYMBOLS.filter(s => tests.some(t => t.symbol === s))
  out.push('')
  out.push(used.map(s => `${s} ${SYMBOL_NAMES[s]}`).join(', '))
  for (const kind of KINDS) {
    const ofKind = tests.filter(t => t.kind === kind)
    const counts = used.map(s => [s, ofKind.filter(t => t.symbol === s).length]).filter(([, n]) => n > 0)
    out.push(`${kind.padEnd(8)} ${String(ofKind.length).padStart(4)}: ` + counts.map(([s, n]) => `${s} ${n}`).join('  '))
  }
  const optimal = tests.filter(t => t.kind === 'optimal')
  const optimalPassed = optimal.filter(t => t.symbol === PASS).length
  out.push('')
  out.push(`optimal: ${optimalPassed} of ${optimal.length} passed`)

  // Every required test that did not pass.
  const notPassed = tests.filter(t => t.kind === 'required' && t.symbol !== PASS)
  out.push('')
  out.push(`required tests not passed: ${notPassed.length} of ${tests.filter(t => t.kind === 'required').length}`)
  for (const t of notPassed) {
    let note
    if (FAILING.has(t.symbol)) {
      if (t.known !== undefined) note = `known difference: ${t.known}`
      else if (t.flaky) note = 'FLAKY: passed when re-run on its own'
      else note = 'UNEXPECTED'
    } else if (t.symbol === DEPENDENCY_FAIL) {
      const failed = t.depends.filter(d => ![PASS, YES].includes(determineTestResult(testSuites, d, results, true)[2]))
      note = `not counted: depends on ${failed.join(', ')}`
    } else {
      note = 'not counted'
    }
    out.push(`  ${t.symbol} ${t.id} [${note}]`)
    out.push(`      ${messageOf(t.result)}`)
    if (t.rerun) {
      if (!t.rerun.found) out.push(`      re-run: no log (${t.rerun.file})`)
      else if (!t.rerun.parsed) out.push(`      re-run: no result line in ${t.rerun.file}`)
      else out.push(`      re-run: ${t.rerun.symbol} ${t.rerun.message}`.trimEnd())
    }
  }

  const knownFailures = failures.filter(t => t.known !== undefined)
  const flaky = failures.filter(t => t.flaky)
  out.push('')
  out.push(`known differences failing: ${knownFailures.length}`)
  for (const t of knownFailures) out.push(`  ${t.symbol} ${t.id}: ${t.known}`)
  out.push(`unexpected required failures: ${unexpected.length}`)
  for (const t of unexpected) out.push(`  ${t.symbol} ${t.id}`)
  if (flaky.length) {
    out.push(`FLAKY required tests (failed in the full run, passed on their own; not failing the run): ${flaky.length}`)
    for (const t of flaky) out.push(`  !!! FLAKY ${t.id}`)
  }

  // Known-list entries that no longer fail here.
  const stale = [...known.keys()].filter(id => allIds.has(id)).map(id => tests.find(t => t.id === id))
    .filter(t => !FAILING.has(t.symbol))
  for (const t of stale) {
    warnings.push(`${t.id} is in ${path.basename(opts.known)} but is ${t.symbol} ${SYMBOL_NAMES[t.symbol]} here` +
      (t.symbol === PASS ? ' (stale entry: remove it if it passes in every configuration)' : ''))
  }
  if (warnings.length) {
    out.push('')
    for (const w of warnings) out.push(`warning: ${w}`)
  }

  out.push('')
  out.push(`cache-tests ${name}: required failed ${failures.length} (known ${knownFailures.length}, flaky ${flaky.length}, ` +
    `unexpected ${unexpected.length}), optimal passed ${optimalPassed} of ${optimal.length}`)
  console.log(out.join('\n'))
  process.exitCode = unexpected.length ? 1 : 0
}

main().catch(err => die(err.stack || String(err)))
