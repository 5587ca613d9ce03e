// Runs an Amazon States Language definition locally with aws-local-stepfunctions, each Task
// state's Lambda call sent to a Lambda Invoke API endpoint (cargo-lambda's emulator) the way
// Step Functions' `arn:aws:states:::lambda:invoke` integration makes it: the state's `Payload`
// is the event; a function error fails the state with the function's `errorType` as `Error`
// and its error JSON as `Cause`, so `Retry` and `Catch` match it as on AWS.
//
// Usage: node run.mjs --definition FILE --input JSON --invoke-url URL [--timeout-ms N]
// Prints one JSON line: {"status", "output", "error", "cause", "events"}; exit 0 when the
// execution ended (whatever its status), 2 on a usage error or an invalid definition.

// Node 20 lacks Promise.withResolvers, which aws-local-stepfunctions uses.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { StateMachine } from 'aws-local-stepfunctions';

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node run.mjs --definition FILE --input JSON --invoke-url URL [--timeout-ms N]\n`,
  );
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      definition: { type: 'string' },
      input: { type: 'string' },
      'invoke-url': { type: 'string' },
      'timeout-ms': { type: 'string', default: '120000' },
    },
  }).values;
} catch (e) {
  usage(e.message);
}
if (!args.definition || args.input === undefined || !args['invoke-url']) {
  usage('--definition, --input and --invoke-url are required');
}
let definition;
let input;
try {
  definition = JSON.parse(readFileSync(args.definition, 'utf8'));
  input = JSON.parse(args.input);
} catch (e) {
  usage(`cannot read the definition or the input: ${e.message}`);
}
const timeoutMs = Number(args['timeout-ms']);
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
  usage('--timeout-ms must be a positive number');
}
const invokeUrl = args['invoke-url'].replace(/\/$/, '');

// The function name the emulator knows: an ARN's name, without a version or alias.
function functionName(nameOrArn) {
  const afterFunction = nameOrArn.includes(':function:')
    ? nameOrArn.split(':function:')[1]
    : nameOrArn;
  return afterFunction.split(':')[0];
}

class LambdaFunctionError extends Error {
  constructor(errorType, cause) {
    super(cause);
    this.name = errorType;
  }
}

async function invoke(stateInput) {
  const name = functionName(String(stateInput.FunctionName ?? ''));
  const response = await fetch(`${invokeUrl}/2015-03-31/functions/${name}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(stateInput.Payload ?? null),
  });
  const text = await response.text();
  if (response.status !== 200 || response.headers.get('x-amz-function-error')) {
    let errorType = 'Lambda.Unknown';
    try {
      errorType = JSON.parse(text).errorType ?? errorType;
    } catch {
      // Not JSON: the cause says what came back.
    }
    if (response.status >= 500 && !text.includes('errorType')) {
      errorType = 'Lambda.ServiceException';
    }
    throw new LambdaFunctionError(errorType, text);
  }
  const payload = text === '' ? null : JSON.parse(text);
  return { Payload: payload, StatusCode: 200 };
}

// Every Task state, in branches too, calls the emulator.
function taskStates(states, into) {
  for (const [name, state] of Object.entries(states ?? {})) {
    if (state.Type === 'Task') into[name] = invoke;
    for (const branch of state.Branches ?? []) taskStates(branch.States, into);
  }
  return into;
}

let machine;
try {
  machine = new StateMachine(definition, { validationOptions: { checkArn: true, checkPaths: true } });
} catch (e) {
  usage(`the definition is not valid: ${e.message}`);
}

const events = [];
const execution = machine.run(input, {
  overrides: { taskResourceLocalHandlers: taskStates(definition.States, {}) },
});
const collecting = (async () => {
  for await (const event of execution.eventLogs) {
    const compact = { type: event.type, at: event.timestamp };
    if (event.state) compact.state = event.state.name;
    if (event.Error ?? event.error) compact.error = event.Error ?? event.error;
    if (event.retry) compact.retry = event.retry;
    events.push(compact);
  }
})();
const timer = setTimeout(() => execution.abort(), timeoutMs);

const answer = { status: 'SUCCEEDED', output: null, error: null, cause: null, events };
try {
  answer.output = await execution.result;
} catch (e) {
  if (e.name === 'ExecutionAbortedError') {
    answer.status = 'ABORTED';
  } else if (e.name === 'ExecutionTimeoutError') {
    answer.status = 'TIMED_OUT';
  } else {
    answer.status = 'FAILED';
    const caught = e.cause ?? e;
    answer.error = caught.name ?? null;
    answer.cause = caught.message ?? null;
  }
} finally {
  clearTimeout(timer);
}
await Promise.race([collecting, new Promise((resolve) => setTimeout(resolve, 1000))]);
process.stdout.write(`${JSON.stringify(answer)}\n`);
process.exit(0);
