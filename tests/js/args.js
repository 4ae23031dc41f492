'use strict';
// Command-line flags for the test peers: opt('port', dflt) reads "--port X"; flag('v2') is true
// when "--v2" is given.
const args = process.argv.slice(2);
exports.opt = (name, dflt) => {
  const i = args.indexOf('--' + name);
  return i >= 0 ? args[i + 1] : dflt;
};
exports.flag = name => args.includes('--' + name);
